#!/usr/bin/env python
"""Before trusting FP16: train one configuration in several precision modes over several
seeds, interleaved, and compare each mode's mAP with FP32 (paired, 95% intervals).

    python scripts/compare_precision.py --modes fp32,fp16,fp32-fp16:2 --seeds 1,2,3,4,5 \
        --out DIR -- <train_yolo3.py arguments without --seed/--save-prefix/--fp16/--amp>

Finished runs in DIR are kept, so the same command continues or extends a study;
``--report-only`` redraws the report from DIR. The logic is in gluoncv_fp16.bench.compare.
"""
import os
import sys


def main(argv=None):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from gluoncv_fp16.bench.compare import main as compare
    return compare(argv)


if __name__ == '__main__':
    sys.exit(main())
