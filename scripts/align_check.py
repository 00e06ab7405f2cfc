#!/usr/bin/env python
"""Alignment check: 1 device x batch 8 vs 2 devices x batch 4 with SyncBN, same 8 images.

Both runs train `--steps` deterministic steps (no random augmentation, fixed order, fixed
input size, same seed) in FP32 from the same initial weights; then diff_params' report
compares the parameters. With SyncBN the two are the same computation up to FP32
rounding, so they must agree within `--tol` (default 5e-4, diff_params' default).
`--fp16` adds an FP16 run (1 device, FP32 master weights, otherwise the same as the
1-device FP32 run, so only the precision differs) and reports how far it is from it, judged against `--fp16-tol` when given (see
docs/distributed.md for the measured figure and the tolerance's derivation).

SyncBatchNorm on several CPU contexts needs MXNET_CPU_TEMP_COPY set before MXNet starts;
this script sets 1024 when it is unset. Exit codes: 0 agree, 1 above tolerance, 2 usage.
"""
import argparse
import logging
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--steps', type=int, default=10, help='training steps per run')
    p.add_argument('--out', required=True, help='folder for the runs\' checkpoints and logs')
    p.add_argument('--network', default='mobilenet0.25')
    p.add_argument('--data-shape', type=int, default=64)
    p.add_argument('--dataset', default='synthetic')
    p.add_argument('--dataset-root', default=None)
    p.add_argument('--lr', type=float, default=0.001)
    p.add_argument('--seed', type=int, default=233)
    p.add_argument('--tol', type=float, default=5e-4,
                   help='max scaled error (diff_params) between the two FP32 runs')
    p.add_argument('--fp16', action='store_true',
                   help='also run FP16 on 1 device and report it against FP32 on 1 device')
    p.add_argument('--fp16-tol', type=float, default=None,
                   help='with --fp16: fail above this scaled error (default: report only)')
    p.add_argument('--loss-scale', default='dynamic', help='loss scale of the FP16 run')
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error('--steps must be >= 1, got {}'.format(args.steps))
    return args


RUNS = {  # name -> (contexts, precision)
    'fp32_1dev': ('cpu:0', 'fp32'),
    'fp32_2dev_syncbn': ('cpu:0,cpu:1', 'fp32'),
    'fp16_1dev': ('cpu:0', 'fp16'),  # same as fp32_1dev but the precision
}


def train_run(name, args):
    """Train one configuration in this process; return its parameters (name -> numpy)."""
    import train_yolo3
    from gluoncv_fp16.engine.build import run_training
    from gluoncv_fp16.engine.checkpoint import read_params
    contexts, precision = RUNS[name]
    out = os.path.join(args.out, name)
    argv = ['--network', args.network, '--data-shape', str(args.data_shape),
            '--batch-size', '8', '--dataset', args.dataset, '-j', '0', '--ctx', contexts,
            '--save-prefix', out + os.sep, '--no-random-shape', '--no-plots', '--syncbn',
            '--epochs', '1000', '--max-iters', str(args.steps), '--val-interval', '100000',
            '--save-interval', '100000', '--lr', str(args.lr), '--seed', str(args.seed),
            '--log-interval', '1000', '--loss-scale', args.loss_scale]
    if args.dataset_root:
        argv += ['--dataset-root', args.dataset_root]
    if precision == 'fp16':
        argv.append('--fp16')
    cfg = train_yolo3.make_config(train_yolo3.parse_args(argv))
    # deterministic: no random augmentation, fixed order (the rest is fixed by the flags)
    cfg = cfg.replace(extra=dict(cfg.extra, augment=False, shuffle=False))
    loop = run_training(cfg)
    applied = loop.iteration - loop.scaler.total_skips if precision == 'fp16' else loop.iteration
    print('{}: {} steps, {} applied'.format(name, loop.iteration, applied), flush=True)
    return read_params(cfg.run_prefix + '_last.ckpt')


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault('MXNET_CPU_TEMP_COPY', '1024')  # before MXNet starts
    sys.path.insert(0, ROOT)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')
    from gluoncv_fp16.engine.config import ConfigError
    from gluoncv_fp16.utils.param_diff import compare_params
    try:
        params = {name: train_run(name, args) for name in RUNS
                  if args.fp16 or not name.startswith('fp16')}
    except (ConfigError, FileNotFoundError) as err:
        print('error: {}'.format(err), file=sys.stderr)
        return 2
    ok = True
    checks = [('fp32_1dev', 'fp32_2dev_syncbn', args.tol)]
    if args.fp16:
        checks.append(('fp32_1dev', 'fp16_1dev', args.fp16_tol))
    for a, b, tol in checks:
        report = compare_params(params[a], params[b])
        print('== A={} B={}'.format(a, b))
        print('\n'.join(report.format(tol if tol is not None else float('inf'), top=8)))
        if tol is not None:
            ok = ok and report.passed(tol)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
