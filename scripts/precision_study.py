#!/usr/bin/env python
"""Which precision modes diverge as the learning rate grows? (a mixed-precision study)

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.precision_study`
(``python -m gluoncv_fp16.bench.precision_study``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.precision_study import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
