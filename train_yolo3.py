#!/usr/bin/env python
"""Train YOLOv3 in FP32, FP16 (FP32 master weights), MXNet AMP, or FP32 then FP16.

GluonCV's command, kept for its users: the same as ``gluoncv-fp16-train`` and
``python -m gluoncv_fp16.cli.train`` (flags: docs/options.md).
"""
import sys

from gluoncv_fp16.cli.train import main

if __name__ == '__main__':
    sys.exit(main())
