#!/usr/bin/env python
"""Measure one precision mode in this process (the child of scripts/benchmark.py).

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.mode`
(``python -m gluoncv_fp16.bench.mode``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.mode import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
