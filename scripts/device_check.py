#!/usr/bin/env python
"""Check a machine before training on it; writes a markdown report.

Kept for users who know this script: the same as ``gluoncv-fp16-check`` and ``python -m
gluoncv_fp16.cli.check`` (the code is in gluoncv_fp16/cli/check.py).
"""
import os
import sys

# this checkout's package, also when another copy is installed
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.cli.check import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
