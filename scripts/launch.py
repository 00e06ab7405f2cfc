#!/usr/bin/env python
"""Launch a distributed MXNet job: dist_sync (scheduler, servers, workers) or Horovod.

    # 2 workers + 1 server on this machine
    python scripts/launch.py -n 2 -s 1 -- python train_yolo3.py --kvstore dist_sync ...
    # 4 machines listed in hosts.txt (host[:ssh_port] per line), one worker + server each
    python scripts/launch.py -n 4 -s 4 -H hosts.txt -- python train_yolo3.py --kvstore dist_sync
    # Horovod: 2 processes here, or 8 over the hosts in hosts.txt (horovodrun over ssh)
    python scripts/launch.py --horovod -n 2 -- python train_yolo3.py --horovod ...
    python scripts/launch.py --horovod -n 8 -H hosts.txt -- python train_yolo3.py --horovod ...

Kept for users who know it; the code is in :mod:`gluoncv_fp16.distributed.launch`
(``python -m gluoncv_fp16.distributed.launch``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from gluoncv_fp16.distributed.launch import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
