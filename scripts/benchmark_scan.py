#!/usr/bin/env python
"""Cost of the start-up image scan per image, next to a full decode of the same files.

The scan (``gluoncv_fp16.data.scan``) reads each file and checks its structure (end
marker, frame header) without decoding pixels. This prints, for the validation images
of a VOC-layout folder (generated at VOC's typical 500x375 when none is given), the
median over interleaved rounds of: scan ms/image, full-decode ms/image (what a scan that
decodes would cost), and their ratio. Files are in the page cache after the first round.

    python scripts/benchmark_scan.py --images 300 --rounds 5
    python scripts/benchmark_scan.py --dataset-root ~/.mxnet/datasets/voc/VOC2007 --split test

Kept for users who know it; the code is in :mod:`gluoncv_fp16.bench.scan`
(``python -m gluoncv_fp16.bench.scan``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.scan import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
