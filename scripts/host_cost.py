#!/usr/bin/env python
"""What an FP16 GPU waits for on the host: blocking reads per step, and snapshot cost.

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.host_cost`
(``python -m gluoncv_fp16.bench.host_cost``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.host_cost import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
