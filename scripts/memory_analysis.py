#!/usr/bin/env python
"""Training-step memory (activations + gradients) in FP32 vs FP16, and forward GFLOPs.

Everything is read from the symbolic training graph's inferred shapes and dtypes (see
gluoncv_fp16.utils.graph_stats); nothing is allocated or run, so it takes seconds.

    python scripts/memory_analysis.py --networks yolo3_darknet53_coco yolo3_mobilenet1.0_voc \
        --data-shapes 320,416,608 --csv memory.csv

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.memory`
(``python -m gluoncv_fp16.bench.memory``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.memory import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
