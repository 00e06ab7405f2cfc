#!/usr/bin/env python
"""Benchmark precision modes side by side: training images/s, peak memory, TFLOP/s.

Each configuration runs in its own process (MXNet AMP is process-wide and memory peaks
are per process). Prints a markdown table with ratios against fp32 of the same network,
shape and batch, and writes CSV and a PNG bar chart.

On a V100 (the design target):

    python scripts/benchmark.py --gpus 0 --modes fp32,fp16,amp --networks darknet53 \\
        --data-shapes 416 --batch-sizes 16 --out bench_v100

On CPU, the fp16 row is the CPU half-storage path (FP16 tensors, FP32-accumulated
convolutions): it proves the FP16 path works, it is not expected to be faster.

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.benchmark`
(``python -m gluoncv_fp16.bench.benchmark``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.benchmark import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
