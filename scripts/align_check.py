#!/usr/bin/env python
"""Alignment check: 1 device x batch 8 vs 2 devices x batch 4 with SyncBN, same 8 images.

Trains the same deterministic steps as FP32 on 1 device and on 2 CPU devices with
SyncBatchNorm (and with ``--fp16`` as FP16 on 1 and 2 devices) from the same trained
weights, and compares the weights and the updates (docs/distributed.md, "Alignment
checks"). Exit codes: 0 agree, 1 above tolerance, 2 usage.

    python scripts/align_check.py --steps 10 --fp16 --out runs/align

SyncBatchNorm on several CPU contexts needs MXNET_CPU_TEMP_COPY set before MXNet starts:
this script sets 1024 when it is unset, before its first import (importing gluoncv_fp16
starts MXNet). The code is in :mod:`gluoncv_fp16.bench.align`
(``python -m gluoncv_fp16.bench.align``, which sets it by running itself again).
"""
import os
import sys

os.environ.setdefault('MXNET_CPU_TEMP_COPY', '1024')  # the module's ENVIRONMENT
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.align import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
