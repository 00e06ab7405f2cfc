"""Turn a validated `TrainConfig` into a ready `TrainLoop` (and run it).

Order matters and is the reason this module exists:
0. the settings are validated (`TrainConfig.validate`: every check of the settings and
   environment variables, one pass);
1. devices are checked (GPU present, FP16 runnable, AMP runnable) before any work;
2. the datasets are read, then the published weights the run starts from are fetched
   (or refused): the start-up checks go in the order of what a user must fix first --
   devices, data, downloads;
3. the FP32 `async_net` and the data loaders are built -- GluonCV-style transforms run an
   FP32 forward of `async_net`, which MXNet AMP would break on CPU;
4. only then is AMP switched on (if asked), and the training network built;
5. the network is initialised in FP32; the loop casts it to the scheduled phase and
   builds each `gluon.Trainer` after the cast.
"""
import logging
import os
import random

import mxnet as mx
import numpy as np

from ..data.datasets import bad_sample_scalars
from ..data.report import startup_report
from ..model_zoo import get_model
from ..precision.policy import activate_amp, get_policy
from .anchors import run_anchors
from .config import ConfigError
from .devices import check_devices, make_contexts
from ..distributed.distributed import fail_fast, horovod_trainer
from ..distributed.workers import describe, prepare_dist_params, setup_workers
from .features import BuildContext, ChiefOnlyState, build_features
from .hooks import (CheckpointHook, MixupScheduleHook, PlotHook, ProgressHook,
                    TensorBoardHook, csv_hooks)
from .loop import LoopOptions, StopRequested, TrainLoop
from .nan_guard import NanGuard, TrainingDiverged
from .checkpoint import read_params, remove_stale_temp_files
from .resume import newest_readable_checkpoint, resume_from
from .state import RunState
from .stopping import stop_on_signals
from .self_check import self_check
from .pretrained import check_downloads, load_pretrained
from .schedule import make_lr_scheduler

__all__ = ['build_training', 'run_training', 'build_data']

logger = logging.getLogger(__name__)


def _seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def build_data(cfg, need_train=True):
    """``(train_set, val_set, classes)`` of a run, its images scanned (the validation set's
    always, the training set's under --strict-data); ``gluoncv-fp16-data`` builds them
    this way too. Raises `ConfigError` (one line) for data that cannot be read, and for
    an empty training split unless `need_train` is False (evaluation on a held-out set
    that has only a validation split)."""
    from ..data.datasets import build_datasets
    from ..data.scan import scan_images
    try:
        train_set, val_set, classes = build_datasets(
            cfg.dataset, root=cfg.dataset_root,
            classes=list(cfg.classes) if cfg.classes else None, strict=cfg.strict_data,
            train_json=cfg.train_json, val_json=cfg.val_json, image_root=cfg.image_root,
            data=cfg.data_yaml)
        # damaged images found now, not after an epoch (strict: BadSampleError, one line)
        scan_images(val_set, 'validation')
        if cfg.strict_data:
            scan_images(train_set, 'training')
    except (ValueError, OSError) as err:  # missing folders, split files, unknown classes
        raise ConfigError(str(err)) from None
    if need_train and len(train_set) == 0:
        raise ConfigError("the {} training split is empty".format(cfg.dataset))
    if cfg.cache:  # before the loaders fork their workers, which inherit the cache
        from ..data.image_cache import CacheError, enable_cache
        try:
            enable_cache({'train': train_set, 'val': val_set}, cfg.cache)
        except CacheError as err:
            raise ConfigError(str(err)) from None
    return train_set, val_set, list(classes)


def _model_kwargs(cfg, classes, norm, anchors):
    kwargs = dict(pretrained_base=cfg.uses_pretrained_base, anchors=anchors, **norm)
    if cfg.model_name.endswith('_custom'):
        kwargs['classes'] = classes
    return kwargs


def _make_async_net(cfg, classes, anchors):
    """FP32 copy with plain BatchNorm: only its anchors and shapes feed the data workers."""
    async_net = get_model(cfg.model_name, **dict(_model_kwargs(cfg, classes, {}, anchors),
                                                 pretrained_base=False))
    async_net.initialize()
    return async_net


def _init_training_net(net, contexts, cfg):
    with mx.autograd.pause():
        net.initialize(ctx=contexts)
        net(mx.nd.zeros((1, 3, cfg.data_shape, cfg.data_shape), ctx=contexts[0]))  # shapes
    if cfg.label_smooth:
        net.set_label_smooth(True)
    if cfg.no_wd:
        net.collect_params('.*beta|.*gamma|.*bias').setattr('wd_mult', 0.0)
    net.hybridize()
    return net


def _make_trainer_factory(cfg, lr_scheduler, workers):
    from mxnet import gluon

    def make_trainer(net, multi_precision):
        params = {'wd': cfg.wd, 'momentum': cfg.momentum, 'lr_scheduler': lr_scheduler,
                  'multi_precision': multi_precision}
        if workers.hvd is not None:
            return horovod_trainer(net.collect_params(), 'sgd', params, hvd=workers.hvd)
        if workers.num_workers > 1:  # a dist kvstore: rank 0 pushes the initial weights
            prepare_dist_params(net.collect_params())
        return gluon.Trainer(net.collect_params(), 'sgd', params, kvstore=workers.kvstore,
                             update_on_kvstore=False)
    return make_trainer


def _resume_source(cfg):
    """``(path, state)`` the run resumes from (state None: read it when resuming), or
    ``(None, None)``: no --resume, or --resume auto before the first checkpoint."""
    if not cfg.resume:
        return None, None
    if cfg.resume != 'auto':
        return cfg.resume, None
    path, state = newest_readable_checkpoint(cfg.run_prefix)
    if not path:
        logger.info('--resume auto: no readable %s_last.ckpt or _best.ckpt yet, starting '
                    'fresh', cfg.run_prefix)
    return path, state


def _start_weights(cfg, resume_path, resume_state):
    """``(weights, origin)`` the run starts from, for their anchors; ``(None, None)``."""
    if resume_path:
        return (resume_state.weights if resume_state is not None
                else read_params(resume_path)), 'checkpoint'
    if cfg.pretrained and os.path.isfile(cfg.pretrained):
        return read_params(cfg.pretrained), '--pretrained'
    return None, None


def _resume(loop, cfg, model_desc, path, state):
    """Restore the loop from `path`; returns the first epoch to train."""
    next_epoch = resume_from(loop, path, model_desc, state=state)
    return cfg.start_epoch if next_epoch is None else next_epoch


def build_training(cfg, on_workers=None):
    """Everything a run needs. Returns ``(loop, start_epoch)``. `on_workers(WorkerSetup)`
    is called as soon as the rank is known, before anything is logged."""
    cfg.validate()
    contexts = make_contexts(cfg.contexts)
    policy = get_policy(cfg.precision)
    check_devices(contexts, policy, amp_restricted=cfg.amp_fp16_ops is not None)
    workers = setup_workers(cfg, contexts)
    if on_workers is not None:
        on_workers(workers)
    if workers.contexts is not None and workers.contexts != contexts:  # Horovod: by rank
        contexts = workers.contexts
        check_devices(contexts, policy, amp_restricted=cfg.amp_fp16_ops is not None)
    if describe(cfg, workers):
        logger.info(describe(cfg, workers))
    _seed_everything(cfg.seed)
    train_set, val_set, classes = build_data(cfg)
    if workers.is_chief or cfg.strict_data:  # strict: every worker refuses the same data
        startup_report(train_set, val_set, classes, cfg.data_shape, strict=cfg.strict_data,
                       log=workers.is_chief, png_path=cfg.run_prefix + '_labels.png'
                       if workers.is_chief and cfg.plots else None)
    check_downloads(cfg)
    norm = _norm_layer_kwargs(cfg, contexts)
    resume_path, resume_state = _resume_source(cfg)
    anchors = run_anchors(cfg, train_set, classes, *_start_weights(cfg, resume_path,
                                                                   resume_state),
                          log=workers.is_chief)
    async_net = _make_async_net(cfg, classes, anchors)
    from ..data.loader import make_train_loader, make_val_loader
    loader = make_train_loader(
        train_set, async_net, cfg.batch_size, cfg.data_shape, num_workers=cfg.num_workers,
        random_shape=not cfg.no_random_shape, mixup=cfg.mixup, seed=cfg.seed,
        num_parts=workers.num_workers, part_index=workers.rank,
        # deterministic alignment runs (scripts/align_check.py) switch these off
        augment=cfg.augment, max_expand=cfg.max_expand, shuffle=cfg.shuffle)
    val_loader = make_val_loader(val_set, cfg.batch_size, cfg.data_shape,
                                 num_workers=cfg.num_workers)
    # before AMP is switched on (for good): a disagreeing AMP must be able to fall back
    cfg, policy = self_check(cfg, policy, contexts, train_set, async_net,
                             _model_kwargs(cfg, classes, {}, anchors))
    activate_amp(policy, **({} if cfg.amp_fp16_ops is None
                            else {'target_precision_ops': list(cfg.amp_fp16_ops)}))
    net = _init_training_net(get_model(cfg.model_name,
                                       **_model_kwargs(cfg, classes, norm, anchors)),
                             contexts, cfg)
    if cfg.pretrained:
        load_pretrained(net, cfg.pretrained, classes, cfg.network)
    num_samples = cfg.num_samples if cfg.num_samples > 0 else len(train_set)
    # The LR schedule counts optimizer updates: an update takes `accumulate` batches.
    updates = max(1, num_samples // (cfg.batch_size * workers.num_workers * cfg.accumulate))
    lr_scheduler = make_lr_scheduler(cfg, iters_per_epoch=updates)
    model_desc = {'name': cfg.model_name, 'classes': classes, 'anchors': anchors}
    # the declared features (evaluation, EMA, early stopping...) first: the epoch's row
    # has their scores when the writers read it
    hooks = build_features(cfg, BuildContext(net, contexts, val_loader, val_set, classes,
                                             is_chief=workers.is_chief))
    hooks += _make_hooks(cfg, loader, model_desc, total_steps=len(loader),
                         chief=workers.is_chief)
    options = LoopOptions(cfg.batch_size, accumulate=cfg.accumulate, clip_grad=cfg.clip_grad,
                          fp32_warmup_epochs=cfg.fp32_warmup_epochs,
                          nan_guard=NanGuard(cfg.nan_fallback_iters, cfg.max_recoveries,
                                             cfg.snapshot_interval,
                                             no_rollback_reason=workers.no_rollback_reason),
                          workers=workers)
    loop = TrainLoop(net, contexts, loader, _make_trainer_factory(cfg, lr_scheduler, workers),
                     policy.make_loss_scaler(cfg.loss_scale), policy, hooks, options)
    loop.record.add_source(lambda: bad_sample_scalars(train_set, val_set))
    start_epoch = (_resume(loop, cfg, model_desc, resume_path, resume_state) if resume_path
                   else cfg.start_epoch)
    return loop, start_epoch


def _norm_layer_kwargs(cfg, contexts):
    if not cfg.syncbn:
        return {}
    if len(contexts) < 2:
        logger.warning('--syncbn has no effect with one device (%s); using BatchNorm',
                       contexts[0])
        return {}
    from ..precision.syncbn import syncbn_kwargs
    return syncbn_kwargs(len(contexts))


def _make_hooks(cfg, loader, model_desc, total_steps, chief):
    """Only the chief (rank 0) saves and writes metrics; others just train."""
    mixup = [MixupScheduleHook(loader, cfg.epochs, cfg.no_mixup_epochs)] if cfg.mixup else []
    if not chief:
        return mixup + [ProgressHook(cfg.log_interval, total_steps, show_bar=False),
                        ChiefOnlyState(CheckpointHook.name)]
    prefix = cfg.run_prefix
    meta = {'model': model_desc, 'config': _plain_config(cfg)}
    hooks = mixup + [ProgressHook(cfg.log_interval, total_steps),
                     CheckpointHook(prefix, cfg.save_interval, lambda: meta,
                                    every=cfg.checkpoint_every)] + csv_hooks(prefix)
    if cfg.tensorboard:
        hooks.append(TensorBoardHook(prefix + '_tensorboard'))
    if cfg.plots:
        hooks.append(PlotHook(prefix, '{} ({})'.format(os.path.basename(prefix),
                                                       cfg.precision)))
    return hooks


def _plain_config(cfg):
    plain = cfg.to_dict()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in plain.items()}


def run_training(cfg, on_workers=None):
    """Build and train; returns the loop (for inspection by callers and tests).

    A SIGTERM or SIGINT ends it with `StopRequested` after a checkpoint at the current
    iteration (single-process runs; :mod:`.stopping`).

    `on_workers(WorkerSetup)` is called once the rank is known (entry points use it to
    route a non-chief worker's log). In a dist-kvstore worker an exception ends the
    process at once (`fail_fast`): a normal exit would wait forever on ps-lite's
    shutdown barrier for the other workers. A `ConfigError` (found by the start-up
    checks after the kvstore exists: data, downloads) still ends it with one line and
    exit code 2.
    """
    cfg.validate()  # a mistake (e.g. no launcher's variables): one line, not a worker crash
    if cfg.kvstore.startswith('dist') and not cfg.horovod:
        with fail_fast(user_errors=(ConfigError,)):
            return _train(cfg, on_workers)
    return _train(cfg, on_workers)


def _train(cfg, on_workers):
    loop, start_epoch = build_training(cfg, on_workers)
    folder = os.path.dirname(os.path.abspath(cfg.run_prefix))
    os.makedirs(folder, exist_ok=True)
    for path in remove_stale_temp_files(folder):
        logger.info('removed %s, left by a run that was killed while saving', path)
    if start_epoch >= cfg.epochs:
        logger.info('the run is complete: its checkpoint has epoch %d of --epochs %d done; '
                    'nothing to train (raise --epochs to continue)', start_epoch - 1,
                    cfg.epochs)
        return loop
    logger.info('training %s (%s) on %s, epochs %d..%d', cfg.model_name, cfg.precision,
                ','.join(cfg.contexts), start_epoch, cfg.epochs - 1)
    try:
        with stop_on_signals(loop):
            return train_or_save_last_good(loop, cfg, start_epoch)
    finally:
        close = getattr(loop.loader, 'close', None)
        if close is not None:  # data workers and their shared memory go with the run
            close()


def train_or_save_last_good(loop, cfg, start_epoch):
    """Train; if the run diverges beyond recovery, save the last good state first.

    The checkpoint is ``{run_prefix}_diverged.ckpt`` (chief only) and the
    `TrainingDiverged` error is re-raised with its path.
    """
    try:
        loop.train(start_epoch, cfg.epochs, max_iters=cfg.max_iters)
    except StopRequested:
        savers = [h for h in loop.hooks if isinstance(h, CheckpointHook)]
        if savers:  # the chief: a resumable checkpoint at this very iteration
            savers[0].save(loop, cfg.run_prefix + '_last.ckpt')
        _wait_for_chief(loop)
        raise
    except TrainingDiverged as err:
        path = _save_last_good(loop, cfg.run_prefix + '_diverged.ckpt')
        _wait_for_chief(loop)
        if path:
            raise TrainingDiverged('{} The last good state (iteration {}) is in {}.'.format(
                err, loop.guard.snapshot.iteration, path)) from err
        raise
    return loop


def _wait_for_chief(loop):
    """All workers stop (or give up) at the same step (the loop's vote); none may exit,
    which makes the launcher stop the job, before the chief has written its file."""
    loop.workers.wait_for_all()


def _save_last_good(loop, path):
    """Write the guard's snapshot (the last good state) with the run's checkpoint hook."""
    savers = [h for h in loop.hooks if isinstance(h, CheckpointHook)]
    if loop.guard.snapshot is None or not savers:
        return None
    snap = loop.guard.snapshot  # with the guard's record of the failures, not the old one
    state = RunState(snap.weights, snap.optimizer, dict(snap.meta, guard=loop.guard.state_dict()),
                     ema=snap.ema, hooks=snap.hooks)
    return savers[0].save(loop, path, state=state)
