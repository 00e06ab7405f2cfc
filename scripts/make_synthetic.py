#!/usr/bin/env python
"""Write the synthetic shapes dataset (Pascal VOC layout) into a folder.

    python scripts/make_synthetic.py data/VOCshapes
    python scripts/make_synthetic.py data/VOCshapes --num-train 500 --num-val 100 --size 128
    python scripts/make_synthetic.py /tmp/bigval --num-train 0 --num-val 1000 --seed 1

The last one is a held-out evaluation set (validation split only; another seed than the
training data's 0), as ``gluoncv-fp16-eval --dataset custom --dataset-root /tmp/bigval``
and ``compare_precision.py --eval-root /tmp/bigval`` read it.

The same arguments always write byte-identical annotations and identical pixels. Read
it with GluonCV's VOC reader (a ``VOCDetection`` subclass with ``CLASSES =
gluoncv_fp16.data.SHAPE_CLASSES``), or with this package's VOC-layout dataset.

Kept for users who know it; the code is in :mod:`gluoncv_fp16.data.make_synthetic`
(``python -m gluoncv_fp16.data.make_synthetic``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.data.make_synthetic import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
