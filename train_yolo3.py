#!/usr/bin/env python
"""Train YOLOv3 in FP32, FP16 (FP32 master weights), MXNet AMP, or FP32 then FP16.

Accepts GluonCV's `scripts/detection/yolo/train_yolo3.py` flags with the same meaning
and defaults (except --dataset, which defaults to the built-in synthetic set), plus
--fp16, --fp32-warmup-epochs, --loss-scale, --ctx, --max-iters, dataset options, and
--accumulate, --clip-grad, --ema and --tensorboard.
This file only parses; the work is in `gluoncv_fp16.train`.
"""
import argparse
import logging
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group('GluonCV train_yolo3.py flags')
    g.add_argument('--network', default='darknet53',
                   help='base network: darknet53, mobilenet1.0 or mobilenet0.25')
    g.add_argument('--data-shape', type=int, default=416, help='input size, a multiple of 32')
    g.add_argument('--batch-size', type=int, default=64, help='images per step, all devices')
    g.add_argument('--dataset', default='synthetic',
                   help='voc, coco, custom (--dataset-root), rec (--dataset-root) or synthetic')
    g.add_argument('-j', '--num-workers', dest='num_workers', type=int, default=4,
                   help='data loading worker processes')
    g.add_argument('--gpus', default='0', help="GPU ids like 0,1; '' trains on the CPU")
    g.add_argument('--epochs', type=int, default=200)
    g.add_argument('--resume', default='',
                   help="checkpoint to continue from (.ckpt: everything; GluonCV .params: "
                        "weights, with --start-epoch), or 'auto' for this run's last one")
    g.add_argument('--start-epoch', type=int, default=0,
                   help='first epoch when resuming from a weights-only .params file')
    g.add_argument('--lr', type=float, default=0.001)
    g.add_argument('--lr-mode', default='step', help='step, poly or cosine')
    g.add_argument('--lr-decay', type=float, default=0.1, help='step decay factor')
    g.add_argument('--lr-decay-period', type=int, default=0,
                   help='decay every N epochs (overrides --lr-decay-epoch)')
    g.add_argument('--lr-decay-epoch', default='160,180', help='epochs at which to decay')
    g.add_argument('--warmup-lr', type=float, default=0.0, help='LR at the start of warm-up')
    g.add_argument('--warmup-epochs', type=int, default=0, help='linear LR warm-up epochs')
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--wd', type=float, default=0.0005, help='weight decay')
    g.add_argument('--log-interval', type=int, default=100, help='log every N batches')
    g.add_argument('--save-prefix', default='', help='prefix of every output file')
    g.add_argument('--save-interval', type=int, default=10, help='checkpoint every N epochs')
    g.add_argument('--val-interval', type=int, default=1, help='validate every N epochs')
    g.add_argument('--seed', type=int, default=233)
    g.add_argument('--num-samples', type=int, default=-1,
                   help='training images per epoch for the LR schedule (-1: dataset size)')
    g.add_argument('--syncbn', action='store_true', help='synchronised BatchNorm across devices')
    g.add_argument('--no-random-shape', action='store_true',
                   help='train at --data-shape only (no multi-scale 320..608)')
    g.add_argument('--no-wd', action='store_true', help='no weight decay on BN and bias')
    g.add_argument('--mixup', action='store_true', help='mixup augmentation')
    g.add_argument('--max-expand', type=float, default=4.0,
                   help="largest zoom-out of the random expand augmentation (GluonCV's "
                        "recipe: 4, objects shrink up to 4x; 1: none). Small inputs and "
                        "small datasets learn much faster with less (docs/training.md)")
    g.add_argument('--no-mixup-epochs', type=int, default=20,
                   help='turn mixup off for the last N epochs')
    g.add_argument('--label-smooth', action='store_true', help='label smoothing')
    g.add_argument('--amp', action='store_true', help='MXNet AMP (GPU only)')
    g.add_argument('--horovod', action='store_true', help='distribute with Horovod')
    n = p.add_argument_group('gluoncv_fp16 flags')
    n.add_argument('--fp16', action='store_true',
                   help='FP16 training with FP32 master weights and loss scaling')
    n.add_argument('--fp32-warmup-epochs', type=int, default=0,
                   help='with --fp16: train the first N epochs in FP32, then switch')
    n.add_argument('--loss-scale', default='dynamic',
                   help="'dynamic', 'none' (the plain FP16 recipe) or a fixed number")
    n.add_argument('--ctx', default=None,
                   help='explicit devices, e.g. cpu:0,cpu:1 (overrides --gpus)')
    n.add_argument('--kvstore', default='device',
                   help='local, device, nccl, dist_sync or dist_device_sync')
    n.add_argument('--dataset-root', default=None,
                   help='dataset folder (custom/rec; voc/coco/synthetic: overrides default)')
    n.add_argument('--classes', default=None, help='comma-separated class names (custom/rec)')
    n.add_argument('--pretrained-base', action=argparse.BooleanOptionalAction, default=None,
                   help='ImageNet backbone weights (default: on, off for --dataset synthetic)')
    n.add_argument('--pretrained', default='',
                   help="start from these weights: 'voc' / 'coco' (GluonCV's), a .params "
                        "file or a checkpoint; shared classes keep their predictions")
    n.add_argument('--max-iters', type=int, default=0, help='stop after N iterations (smoke runs)')
    n.add_argument('--strict-data', action='store_true',
                   help='fail on the first bad sample instead of repairing or skipping it')
    n.add_argument('--nan-fallback-iters', type=int, default=100,
                   help='after a NaN rollback, iterations trained in FP32 before FP16 again')
    n.add_argument('--max-recoveries', type=int, default=3,
                   help='NaN rollbacks allowed before the run stops')
    n.add_argument('--no-plots', action='store_true', help='do not draw PNG plots at the end')
    n.add_argument('--accumulate', type=int, default=1,
                   help='batches per optimizer update (gradient accumulation); the effective '
                        'batch is --batch-size x N, and the LR schedule counts updates')
    n.add_argument('--clip-grad', type=float, default=0.0, metavar='MAXNORM',
                   help='clip the global L2 norm of the unscaled gradients (0: off)')
    n.add_argument('--checkpoint-every', type=int, default=0, metavar='N',
                   help='also save the resumable state every N iterations, mid-epoch '
                        '(0: at epoch ends only); a resume continues exactly there')
    n.add_argument('--ema', action='store_true',
                   help='keep an EMA of the FP32 weights; validate, save _best and export it')
    n.add_argument('--ema-decay', type=float, default=0.9999,
                   help='EMA decay (ramped as YOLOv5: d * (1 - exp(-updates / 2000)))')
    n.add_argument('--tensorboard', action='store_true',
                   help="TensorBoard event files under the save prefix (pip install "
                        "'.[tensorboard]')")
    n.add_argument('--cache', choices=('ram', 'disk'), default=None,
                   help='keep decoded images (in memory, or in a file next to the dataset) '
                        'so that epochs after the first decode nothing')
    n.add_argument('--self-check', default='stop', choices=('stop', 'fallback'),
                   help='--fp16/--amp: one step is compared with FP32 on the devices at '
                        'start-up; on disagreement stop (exit 2) or train in FP32')
    n.add_argument('--no-self-check', action='store_true', help='skip that start-up check')
    return p.parse_args(argv)


def make_config(args):
    """argparse namespace -> validated TrainConfig (raises ConfigError)."""
    from gluoncv_fp16.train.config import ConfigError, TrainConfig, parse_contexts
    if args.fp16 and args.amp:
        raise ConfigError('--fp16 and --amp are two different precision modes; choose one')
    try:
        decay = tuple(int(e) for e in args.lr_decay_epoch.split(',') if e.strip())
    except ValueError:
        raise ConfigError('--lr-decay-epoch {!r}: use comma-separated epochs like 160,180'
                          .format(args.lr_decay_epoch)) from None
    classes = tuple(c.strip() for c in args.classes.split(',') if c.strip()) \
        if args.classes else None
    return TrainConfig(
        network=args.network, data_shape=args.data_shape, batch_size=args.batch_size,
        dataset=args.dataset, dataset_root=args.dataset_root, classes=classes,
        num_workers=args.num_workers, contexts=parse_contexts(args.gpus, args.ctx),
        epochs=args.epochs, resume=args.resume.strip(), start_epoch=args.start_epoch,
        lr=args.lr, lr_mode=args.lr_mode, lr_decay=args.lr_decay,
        lr_decay_period=args.lr_decay_period, lr_decay_epoch=decay, warmup_lr=args.warmup_lr,
        warmup_epochs=args.warmup_epochs, momentum=args.momentum, wd=args.wd,
        log_interval=args.log_interval, save_prefix=args.save_prefix,
        save_interval=args.save_interval, val_interval=args.val_interval, seed=args.seed,
        num_samples=args.num_samples, syncbn=args.syncbn,
        no_random_shape=args.no_random_shape, no_wd=args.no_wd, mixup=args.mixup,
        max_expand=args.max_expand,
        no_mixup_epochs=args.no_mixup_epochs, label_smooth=args.label_smooth,
        precision='fp16' if args.fp16 else 'amp' if args.amp else 'fp32',
        fp32_warmup_epochs=args.fp32_warmup_epochs, loss_scale=args.loss_scale,
        kvstore=args.kvstore, horovod=args.horovod, max_iters=args.max_iters,
        strict_data=args.strict_data, nan_fallback_iters=args.nan_fallback_iters,
        max_recoveries=args.max_recoveries, plots=not args.no_plots,
        pretrained_base=args.pretrained_base, accumulate=args.accumulate,
        clip_grad=args.clip_grad, ema=args.ema, ema_decay=args.ema_decay,
        tensorboard=args.tensorboard, cache=args.cache or '',
        checkpoint_every=args.checkpoint_every,
        self_check='off' if args.no_self_check else args.self_check,
        pretrained=args.pretrained.strip()).validate()


def check_writable(prefix):
    """Refuse a --save-prefix whose folder cannot be created or written, before any work."""
    from gluoncv_fp16.train.config import ConfigError
    folder = os.path.dirname(os.path.abspath(prefix + 'x'))
    probe = os.path.join(folder, '.gluoncv_fp16-write-test-{}'.format(os.getpid()))
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as err:
        raise ConfigError('--save-prefix {!r}: cannot write to {} ({}); choose a folder you '
                          'can write to'.format(prefix, folder, err.strerror or err)) from None


def files_before(prefix):
    """(whether the --save-prefix folder exists, the files in it) before the run."""
    folder = os.path.dirname(os.path.abspath(prefix + 'x'))
    return (True, set(os.listdir(folder))) if os.path.isdir(folder) else (False, set())


def forget_refused_run(handlers, prefix, before):
    """A run refused before it trained (bad data found at start-up) leaves nothing: its
    log, and the folder made for it, go when they are all the run wrote."""
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.close()
    folder = os.path.dirname(os.path.abspath(prefix + 'x'))
    existed, files = before
    new = set(os.listdir(folder)) - files if os.path.isdir(folder) else set()
    if any(not name.endswith('_train.log') for name in new):
        return  # it got further (checkpoints, metrics): keep everything
    for name in new:
        os.remove(os.path.join(folder, name))
    if not existed and os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)


def setup_logging(log_path):
    """Console + log file; returns the handlers so `main` can remove them again."""
    folder = os.path.dirname(os.path.abspath(log_path))
    os.makedirs(folder, exist_ok=True)
    fmt = logging.Formatter('%(asctime)s %(levelname)s %(message)s', '%H:%M:%S')
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(log_path)]
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    return handlers


def route_worker_log(handlers, prefix, then=None):
    """Rank > 0 of a distributed run: own log file, only warnings on the console.
    `then()` runs once the log is routed (the first lines that name this run)."""
    def on_workers(workers):
        if not workers.is_chief:
            for handler in handlers:
                if isinstance(handler, logging.FileHandler):
                    logging.getLogger().removeHandler(handler)
                    handler.close()
                else:
                    handler.setLevel(logging.WARNING)
            own = logging.FileHandler('{}_train.rank{}.log'.format(prefix, workers.rank))
            own.setFormatter(handlers[0].formatter)
            logging.getLogger().addHandler(own)
            handlers.append(own)
        if then is not None:
            then()
    return on_workers


def main(argv=None):
    args = parse_args(argv)
    from gluoncv_fp16.train.build import run_training
    from gluoncv_fp16.train.checkpoint import CheckpointError
    from gluoncv_fp16.train.config import ConfigError
    from gluoncv_fp16.train.loop import StopRequested
    from gluoncv_fp16.train.nan_guard import TrainingDiverged
    from gluoncv_fp16.model_zoo import PretrainedWeightsUnavailable
    from gluoncv_fp16.data import BadSampleError
    user_errors = (ConfigError, CheckpointError, FileNotFoundError, TrainingDiverged,
                   PretrainedWeightsUnavailable, BadSampleError)
    handlers, before = [], None
    try:
        cfg = make_config(args)
        before = files_before(cfg.save_prefix)
        check_writable(cfg.save_prefix)
        handlers = setup_logging(cfg.run_prefix + '_train.log')
        run_training(cfg, on_workers=route_worker_log(
            handlers, cfg.run_prefix,
            lambda: logging.getLogger(__name__).info('arguments: %s', vars(args))))
    except user_errors as err:
        print('error: {}'.format(err), file=sys.stderr)
        if before is not None:
            forget_refused_run(handlers, cfg.save_prefix, before)
        return 2
    except StopRequested as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
