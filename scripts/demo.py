#!/usr/bin/env python
"""Draw a detector's boxes, class names and scores on images; one PNG per input.

Kept for users who know this script: the same as ``gluoncv-fp16-demo`` and ``python -m
gluoncv_fp16.cli.demo`` (the code is in gluoncv_fp16/cli/demo.py).
"""
import os
import sys

# this checkout's package, also when another copy is installed
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.cli.demo import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
