#!/usr/bin/env python
"""What an FP16 GPU waits for on the host: blocking reads per step, and snapshot cost.

``--reads``: builds a run from train_yolo3.py's own flags (default: the measurement of
the run-state issue, ``--fp16`` mobilenet0.25, 64 px, batch 2) and counts every blocking
host<->device read (``asnumpy``, ``asscalar``, ``wait_to_read``, ``waitall``) during the
training steps, NaN-guard snapshots included, validation excluded.

``--snapshot``: one NaN-guard snapshot of a network (default darknet53) against a plain
device copy of the same arrays, FP32 and FP16, interleaved, with the median of repeats.

    python scripts/host_cost.py --reads --steps 200
    python scripts/host_cost.py --snapshot --network darknet53 --repeats 7

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.host_cost`
(``python -m gluoncv_fp16.bench.host_cost``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.host_cost import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
