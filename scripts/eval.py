#!/usr/bin/env python
"""Evaluate a detector on a validation set: mAP per class, FP32 vs FP16, PR curves, JSON.

Kept for users who know this script: the same as ``gluoncv-fp16-eval`` and ``python -m
gluoncv_fp16.cli.eval`` (the code is in gluoncv_fp16/cli/eval.py).
"""
import os
import sys

# this checkout's package, also when another copy is installed
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.cli.eval import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
