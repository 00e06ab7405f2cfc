#!/usr/bin/env python
"""Export a trained detector: MXNet symbol + params (FP32 or FP16), or one ONNX file.

Kept for users who know this script: the same as ``gluoncv-fp16-export`` and ``python -m
gluoncv_fp16.cli.export`` (the code is in gluoncv_fp16/cli/export.py).
"""
import os
import sys

# this checkout's package, also when another copy is installed
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.cli.export import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
