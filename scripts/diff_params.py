#!/usr/bin/env python
"""Compare two parameter files tensor by tensor; exit 1 when they differ beyond --tol.

    python scripts/diff_params.py fp32_run.params fp16_run.params --tol 5e-4
    python scripts/diff_params.py runs/a.ckpt runs/b.ckpt --top 20

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.diff_params`
(``python -m gluoncv_fp16.bench.diff_params``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.diff_params import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
