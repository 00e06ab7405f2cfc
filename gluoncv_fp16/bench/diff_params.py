"""Compare two parameter files tensor by tensor; exit 1 when they differ beyond --tol.

    python scripts/diff_params.py fp32_run.params fp16_run.params --tol 5e-4
    python scripts/diff_params.py runs/a.ckpt runs/b.ckpt --top 20

Accepts .params files (FP16 or FP32, save_parameters or export style) and gluoncv_fp16
checkpoints. Per parameter it prints max |A-B| and the scaled error max|A-B| / max(|A|,
|B|), worst first, then names found in one file only and shape mismatches, then one
summary line. The default tolerance 5e-4 is just above FP16 rounding (2**-11 = 4.9e-4),
so an FP16 copy of an FP32 file passes. Exit status: 0 within tolerance, 1 above it or
different names/shapes, 2 unusable input.
"""
import argparse
import sys

from ..train.checkpoint import CheckpointError, read_params
from ..utils.param_diff import (DEFAULT_TOL, ParamFileError, compare_params,
                                           read_param_file)


def _non_negative(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError('must be >= 0, got {}'.format(text))
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('a', help='first .params file or checkpoint (A)')
    parser.add_argument('b', help='second .params file or checkpoint (B)')
    parser.add_argument('--tol', type=_non_negative, default=DEFAULT_TOL,
                        help='largest allowed scaled error max|A-B|/max(|A|,|B|) per '
                        'parameter (default %(default)g)')
    parser.add_argument('--top', type=int, default=None,
                        help='print only the N worst parameters (default: all)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        params = [read_param_file(path, checkpoint_reader=read_params)
                  for path in (args.a, args.b)]
    except (ParamFileError, CheckpointError) as err:
        print('diff_params.py: error: {}'.format(err), file=sys.stderr)
        return 2
    report = compare_params(*params)
    print('A: {} ({} parameters)\nB: {} ({} parameters)'.format(
        args.a, len(params[0]), args.b, len(params[1])))
    print('\n'.join(report.format(args.tol, top=args.top)))
    return 0 if report.passed(args.tol) else 1


if __name__ == '__main__':
    sys.exit(main())
