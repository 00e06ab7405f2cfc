#!/usr/bin/env python
"""Which precision modes diverge as the learning rate grows? (a mixed-precision study)

The published ResNet-50 experiment in miniature, on the synthetic set on CPU: fp32,
fp16 without loss scaling (the plain recipe), fp16 with dynamic loss scaling, and amp
where it can run, each trained N iterations at increasing learning rates (and batch
sizes). The NaN guard is off (no rollback), so a run that produces inf/NaN stops and is
reported as diverged at that iteration. Prints a markdown table, writes CSV and a PNG.

    python scripts/precision_study.py --lrs 0.001,0.01,0.05 --iters 40 --out study

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.precision_study`
(``python -m gluoncv_fp16.bench.precision_study``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.precision_study import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
