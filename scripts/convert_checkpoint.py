#!/usr/bin/env python
"""Convert a gluoncv_fp16 0.1 checkpoint (pickled optimizer state) to the pickle-free format.

Unpickling runs whatever code the file names: only convert files you trust.

    python scripts/convert_checkpoint.py OLD.ckpt NEW.ckpt --trust-pickle
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('old', help='a gluoncv_fp16 0.1 .ckpt (with trainer.states)')
    p.add_argument('new', help='where to write the converted checkpoint')
    p.add_argument('--trust-pickle', action='store_true',
                   help='I trust this file: unpickle its optimizer state (this runs code)')
    args = p.parse_args(argv)
    from gluoncv_fp16.train.checkpoint import CheckpointError
    from gluoncv_fp16.train.legacy import convert_v1_checkpoint
    try:
        path = convert_v1_checkpoint(args.old, args.new, trust_pickle=args.trust_pickle)
    except (CheckpointError, OSError) as err:
        print('convert_checkpoint.py: error: {}'.format(err), file=sys.stderr)
        return 2
    print('wrote {}'.format(path))
    return 0


if __name__ == '__main__':
    sys.exit(main())
