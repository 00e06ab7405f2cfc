#!/usr/bin/env python
"""Benchmark precision modes side by side: training images/s, peak memory, TFLOP/s.

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.benchmark`
(``python -m gluoncv_fp16.bench.benchmark``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.benchmark import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
