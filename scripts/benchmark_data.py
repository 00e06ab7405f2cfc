#!/usr/bin/env python
"""What a data pipeline costs per image, gluoncv_fp16's next to GluonCV's, in one run.

Worker cost per image by stage, main-process cost per image of each loader, the image
cache, the machine needed for a target throughput and the cost of wrapping a batch's
host arrays (docs/data.md, "Benchmark").

    python scripts/benchmark_data.py --target-ips 2000
    python scripts/benchmark_data.py --rounds 3 --main-batches 10 --workers 1,2

"Per image" is one core's work: unless --all-threads is given, this script sets
OMP_NUM_THREADS=1 and MXNET_CPU_WORKER_NTHREADS=1 when unset, before its first import
(importing gluoncv_fp16 starts MXNet, which reads them then). The code is in
:mod:`gluoncv_fp16.bench.data_pipeline` (``python -m gluoncv_fp16.bench.data_pipeline``,
which sets them by running itself again).
"""
import os
import sys

if '--all-threads' not in sys.argv:  # the module's thread_environment()
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('MXNET_CPU_WORKER_NTHREADS', '1')

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.bench.data_pipeline import main  # noqa: E402

if __name__ == '__main__':
    main()
