"""Alignment check: 1 device x batch 8 vs 2 devices x batch 4 with SyncBN, same 8 images.

Every run trains `--steps` deterministic steps (no random augmentation, fixed order,
fixed input size, same seed) from the same starting weights and saves its weights as
``OUT/<run>.params`` (FP16 run: its FP32 masters); diff_params' report then compares them:

* ``fp32_1dev`` (1 device, batch 8, BatchNorm) vs ``fp32_2dev_syncbn`` (2 CPU devices x
  4, SyncBatchNorm): the same computation up to FP32 rounding, so they must agree within
  `--tol` (default 5e-4, diff_params' scaled error).
* with ``--fp16``, ``fp16_1dev`` (FP16 with FP32 master weights, static loss scale so
  no step is skipped) vs ``fp32_1dev``: the per-tensor table of the master weights is
  printed, and the run passes when the whole update (weights after minus before, all
  trained tensors together) is within `--fp16-tol` of FP32's, in relative L2 norm. And
  ``fp16_2dev_syncbn`` vs ``fp16_1dev`` by the same measure: FP16 gradients reduced over
  devices into the FP32 masters, with the loss scale and the batch normalisation.

The starting weights must be trained ones (`--init`), as when aligning a port from
pretrained weights; without `--init` the script first trains `--warm-steps` FP32 steps
itself. From a fresh initialisation the comparison means nothing: there, one FP32 step
already differs from the same step computed in float64 by up to 50% in some gradients
(measured, docs/distributed.md "SyncBN alignment"), so two FP32 runs cannot agree.

    python scripts/align_check.py --steps 10 --fp16 --out runs/align
    python -m gluoncv_fp16.bench.align --steps 10 --fp16 --out runs/align

SyncBatchNorm on several CPU contexts needs MXNET_CPU_TEMP_COPY set before MXNet starts
(MXNet reads it once, when it loads); both commands set 1024 when it is unset.
``scripts/align_check.py`` sets it before its first import. ``python -m`` loads MXNet
(the package's ``__init__``) before this module runs, so there the module re-runs the
same command in place (``os.execve``) with the variable set: the user gets the same run
from either command, without having to know the variable (a value already set is kept,
and then nothing is re-run). :func:`main` called from Python does not set it: its
training refuses SyncBN on several CPU contexts without it (exit code 2, one line).
Exit codes: 0 agree, 1 above tolerance, 2 usage.
"""
import argparse
import logging
import os
import sys

import mxnet as mx

from ..errors import ConfigError
from ..model_zoo import LIGHTEST_NETWORK
from ..model_zoo.params import named_params
from ..precision.policy import FULL_PRECISION, get_policy
from ..train.build import run_training
from ..train.checkpoint import CheckpointError, read_params
from ..train.config import FLAG_GROUPS, TrainConfig
from ..utils.options import add_flags, from_namespace
from ..utils.param_diff import compare_params, update_error
from .machine import rerun_with_environment

__all__ = ['ENVIRONMENT', 'RUNS', 'FP16_TOL', 'parse_args', 'train', 'starting_weights',
           'check_fp32_pair', 'check_fp16', 'main']

# set before MXNet starts when unset: SyncBatchNorm on several CPU contexts needs it
ENVIRONMENT = {'MXNET_CPU_TEMP_COPY': '1024'}

RUNS = {  # name -> (contexts, precision)
    'fp32_1dev': ('cpu:0', 'fp32'),
    'fp32_2dev_syncbn': ('cpu:0,cpu:1', 'fp32'),
    'fp16_1dev': ('cpu:0', 'fp16'),  # same as fp32_1dev but the precision
    'fp16_2dev_syncbn': ('cpu:0,cpu:1', 'fp16'),  # same as fp16_1dev but the devices
}
# relative L2 error of the update: 2x the largest measured over seeds and oneDNN instruction
# sets (docs/results.md "Alignment checks"; docs/distributed.md "FP16 vs FP32")
FP16_TOL = 8e-2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--steps', type=int, default=10, help='training steps per run')
    p.add_argument('--out', required=True, help='folder for the runs\' checkpoints and logs')
    p.add_argument('--network', default=None,
                   help='base network (default: the lightest registered one)')
    p.add_argument('--data-shape', type=int, default=64)
    p.add_argument('--dataset', default='synthetic')
    p.add_argument('--dataset-root', default=None)
    p.add_argument('--lr', type=float, default=0.001)
    p.add_argument('--seed', type=int, default=233)
    p.add_argument('--init', default=None,
                   help='starting weights (.params or checkpoint); default: --warm-steps')
    p.add_argument('--warm-steps', type=int, default=200,
                   help='without --init: FP32 steps trained first to get starting weights')
    p.add_argument('--warm-lr', type=float, default=0.005, help='LR of those steps')
    p.add_argument('--tol', type=float, default=5e-4,
                   help='max scaled error (diff_params) between the two FP32 runs')
    p.add_argument('--fp16', action='store_true',
                   help='also run FP16 on 1 and on 2 devices and compare their updates '
                   'with FP32 on 1 device and FP16 on 1 device')
    p.add_argument('--fp16-tol', type=float, default=FP16_TOL,
                   help='with --fp16: max ||dW16 - dW32|| / ||dW32|| over the trained tensors')
    p.add_argument('--loss-scale', default='8',
                   help='loss scale of the FP16 run: static, so that no step is skipped '
                   '(256 overflows every step of the default setting; 8 and 64 none)')
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error('--steps must be >= 1, got {}'.format(args.steps))
    if args.init is None and args.warm_steps < 1:
        p.error('give --init or --warm-steps >= 1 (a fresh initialisation cannot be aligned)')
    return args


def _config(args, name, contexts, precision, steps, lr, init):
    out = os.path.join(args.out, name)
    policy = get_policy(precision)
    argv = ['--network', args.network or LIGHTEST_NETWORK, '--data-shape', str(args.data_shape),
            '--batch-size', '8', '--dataset', args.dataset, '-j', '0', '--ctx', contexts,
            '--save-prefix', out + os.sep, '--no-random-shape', '--no-plots', '--syncbn',
            '--epochs', '100000', '--max-iters', str(steps), '--val-interval', '100000',
            '--save-interval', '100000', '--lr', str(lr), '--seed', str(args.seed),
            '--log-interval', '100000',
            '--no-self-check']  # this script compares FP16 with FP32 itself, more strictly
    if args.dataset_root:
        argv += ['--dataset-root', args.dataset_root]
    if init:
        argv += ['--resume', init]
    else:  # from scratch: a short LR warm-up keeps the first steps from diverging
        argv += ['--warmup-epochs', '3']
    argv += policy.cli_args
    if policy.needs_loss_scaling:
        argv += ['--loss-scale', args.loss_scale]
    # the training command's own flags and checks (bench sits below cli/)
    parser = add_flags(argparse.ArgumentParser(), TrainConfig, FLAG_GROUPS)
    cfg = from_namespace(TrainConfig, parser.parse_args(argv)).validate()
    # deterministic: no random augmentation, fixed order (the rest is fixed by the flags)
    return cfg.replace(augment=False, shuffle=False)


def train(args, name, contexts='cpu:0', precision='fp32', steps=None, lr=None, init=None):
    """Train one configuration in this process.

    Returns ``(weights, applied_steps, trained_names)``: FP32 weights by name (for an
    FP16 run the FP32 master weights, i.e. what the optimizer updates), the number of
    steps not skipped by the loss scaler, and the names the optimizer trains.
    """
    cfg = _config(args, name, contexts, precision, steps or args.steps, lr or args.lr, init)
    loop = run_training(cfg)
    applied = loop.iteration - loop.scaler.total_skips  # an FP32 scaler never skips
    print('{}: {} steps, {} applied'.format(name, loop.iteration, applied), flush=True)
    loop.set_phase(FULL_PRECISION)  # FP16: the masters become the network's weights
    trained = {name for name, p in named_params(loop.net).items()
               if p.grad_req != 'null'}
    path = os.path.join(args.out, name + '.params')  # for scripts/diff_params.py
    loop.net.save_parameters(path)  # structural names, as structural_params() gives them
    print('{}: weights in {}'.format(name, path), flush=True)
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}, applied, trained


def starting_weights(args):
    """Path of the weights every run starts from: --init, or a short FP32 training."""
    if args.init:
        return args.init
    train(args, 'warm_start', steps=args.warm_steps, lr=args.warm_lr)
    print('starting weights: {} FP32 steps at lr {:g}'.format(args.warm_steps, args.warm_lr),
          flush=True)
    return os.path.join(args.out, 'warm_start.params')


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')
    try:
        init = starting_weights(args)
        start = read_params(init)
        runs = {name: train(args, name, contexts, precision, init=init)
                for name, (contexts, precision) in RUNS.items()
                if args.fp16 or not get_policy(precision).runs_float16}
    except (ConfigError, CheckpointError, FileNotFoundError) as err:
        print('error: {}'.format(err), file=sys.stderr)
        return 2
    ok = check_fp32_pair(runs, args.tol)
    if args.fp16:
        ok = check_fp16(runs, start, args) and ok
    return 0 if ok else 1


def check_fp32_pair(runs, tol):
    report = compare_params(runs['fp32_1dev'][0], runs['fp32_2dev_syncbn'][0])
    print('== weights: A=fp32_1dev B=fp32_2dev_syncbn')
    print('\n'.join(report.format(tol, top=8)))
    return report.passed(tol)


def check_fp16(runs, start, args):
    print('== weights (FP16 run: its FP32 masters): A=fp32_1dev B=fp16_1dev, for '
          'information')
    print('\n'.join(compare_params(runs['fp32_1dev'][0], runs['fp16_1dev'][0])
                    .format(float('inf'), top=8)[:-1]))
    ok = True
    for a, b in (('fp32_1dev', 'fp16_1dev'), ('fp16_1dev', 'fp16_2dev_syncbn')):
        print('== updates (weights after - before): A={} B={}'.format(a, b))
        ok = _check_update(runs[a], runs[b], start, args) and ok
    return ok


def _check_update(run_a, run_b, start, args):
    (weights_a, applied_a, trained), (weights_b, applied_b, _) = run_a, run_b
    skipped = args.steps - min(applied_a, applied_b)
    if skipped:
        print('FAIL: an FP16 run skipped {} of {} steps (gradient overflow at loss scale {}); '
              'the runs are not comparable, use a lower --loss-scale'.format(
                  skipped, args.steps, args.loss_scale))
        return False
    rel, cosine = update_error(start, weights_a, weights_b, names=trained)
    passed = rel <= args.fp16_tol
    print('{}: update over {} trained tensors: ||dB - dA|| / ||dA|| = {:.3g} (tol {:g}), '
          'cosine {:.6f}'.format('OK' if passed else 'FAIL', len(trained), rel,
                                 args.fp16_tol, cosine))
    return passed


if __name__ == '__main__':
    rerun_with_environment('gluoncv_fp16.bench.align', ENVIRONMENT)
    sys.exit(main())
