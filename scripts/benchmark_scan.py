#!/usr/bin/env python
"""Cost of the start-up image scan per image, next to a full decode of the same files.

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.scan`
(``python -m gluoncv_fp16.bench.scan``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.scan import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
