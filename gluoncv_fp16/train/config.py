"""The settings of one training run, validated before any work starts.

`TrainConfig` is built once (from the CLI or by hand) and never mutated; derived values
are properties. Every contradiction a user can type is caught by :meth:`validate` with
one line saying what was received and what to do.
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from ..data.datasets import DATASETS
from ..model_zoo.zoo import BACKBONES as NETWORKS

__all__ = ['TrainConfig', 'ConfigError', 'parse_contexts']

LR_MODES = ('step', 'poly', 'cosine')
KVSTORES = ('local', 'device', 'nccl', 'dist_sync', 'dist_device_sync')
SELF_CHECKS = ('stop', 'fallback', 'off')


class ConfigError(ValueError):
    """A setting, or a combination of settings, that cannot work."""


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a run. Defaults are GluonCV's `train_yolo3.py` defaults."""
    network: str = 'darknet53'
    data_shape: int = 416
    batch_size: int = 64
    dataset: str = 'voc'
    dataset_root: Optional[str] = None
    classes: Optional[Tuple[str, ...]] = None
    num_workers: int = 4
    contexts: Tuple[str, ...] = ('gpu:0',)
    epochs: int = 200
    resume: str = ''
    start_epoch: int = 0
    lr: float = 0.001
    lr_mode: str = 'step'
    lr_decay: float = 0.1
    lr_decay_period: int = 0
    lr_decay_epoch: Tuple[int, ...] = (160, 180)
    warmup_lr: float = 0.0
    warmup_epochs: int = 0
    momentum: float = 0.9
    wd: float = 0.0005
    log_interval: int = 100
    save_prefix: str = ''
    save_interval: int = 10
    val_interval: int = 1
    seed: int = 233
    num_samples: int = -1
    syncbn: bool = False
    no_random_shape: bool = False
    no_wd: bool = False
    mixup: bool = False
    no_mixup_epochs: int = 20
    label_smooth: bool = False
    precision: str = 'fp32'            # fp32 | fp16 | amp
    fp32_warmup_epochs: int = 0
    loss_scale: str = 'dynamic'        # dynamic | none | <number>; fp16/amp only
    kvstore: str = 'device'
    horovod: bool = False
    max_iters: int = 0                 # > 0: stop after this many iterations (smoke runs)
    strict_data: bool = False
    nan_fallback_iters: int = 100
    max_recoveries: int = 3
    snapshot_interval: int = 50
    plots: bool = True
    pretrained_base: Optional[bool] = None   # None: on, off for the synthetic set
    accumulate: int = 1                # batches per optimizer update
    clip_grad: float = 0.0             # > 0: clip the global gradient L2 norm to this
    ema: bool = False
    ema_decay: float = 0.9999
    tensorboard: bool = False
    augment: bool = True               # off: deterministic alignment runs (align_check)
    max_expand: float = 4.0            # largest zoom-out of the random expand (GluonCV: 4)
    shuffle: bool = True
    amp_fp16_ops: Optional[Tuple[str, ...]] = None  # AMP's FP16 op list (None: MXNet's)
    checkpoint_every: int = 0          # > 0: also save _last.ckpt every N iterations
    cache: str = ''                    # '' | ram | disk: decoded images kept across epochs
    self_check: str = 'stop'           # stop | fallback | off; fp16/amp start-up check
    pretrained: str = ''               # '' | 'voc' | 'coco' | a .params file or checkpoint

    @property
    def model_name(self):
        suffix = self.dataset if self.dataset in ('voc', 'coco') else 'custom'
        return 'yolo3_{}_{}'.format(self.network, suffix)

    @property
    def uses_pretrained_base(self):
        """GluonCV always starts from an ImageNet backbone; the synthetic set trains from
        scratch (offline machines, tiny images) unless --pretrained-base says otherwise,
        and --pretrained replaces the backbone's weights anyway."""
        if self.pretrained_base is None:
            return self.dataset != 'synthetic' and not self.pretrained
        return bool(self.pretrained_base)

    @property
    def run_name(self):
        return 'yolo3_{}_{}'.format(self.network, self.dataset)

    @property
    def run_prefix(self):
        """Prefix of every file the run writes (GluonCV: save_prefix + net name)."""
        return self.save_prefix + self.run_name

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    def validate(self):
        """Raise `ConfigError` for the first impossible setting; returns self."""
        checks = [
            (self.network in NETWORKS,
             "--network {!r}: choose one of {}".format(self.network, list(NETWORKS))),
            (self.dataset in DATASETS,
             "--dataset {!r}: choose one of {}".format(self.dataset, list(DATASETS))),
            (self.data_shape > 0 and self.data_shape % 32 == 0,
             "--data-shape {} must be a positive multiple of 32 (YOLOv3's largest stride), "
             "e.g. 320, 416 or 608".format(self.data_shape)),
            (self.batch_size > 0, "--batch-size must be positive, got {}".format(self.batch_size)),
            (self.batch_size % max(1, len(self.contexts)) == 0,
             "--batch-size {} is not divisible by the {} devices ({}); use a multiple of {}"
             .format(self.batch_size, len(self.contexts), ','.join(self.contexts),
                     len(self.contexts))),
            (self.precision in ('fp32', 'fp16', 'amp'),
             "unknown precision {!r}".format(self.precision)),
            (self.fp32_warmup_epochs == 0 or self.precision == 'fp16',
             "--fp32-warmup-epochs needs --fp16 (it trains FP32 first, then switches to FP16)"),
            (self.fp32_warmup_epochs >= 0, "--fp32-warmup-epochs must be >= 0"),
            (self.lr_mode in LR_MODES,
             "--lr-mode {!r}: choose one of {}".format(self.lr_mode, list(LR_MODES))),
            (self.lr > 0, "--lr must be positive, got {}".format(self.lr)),
            (self.epochs > self.start_epoch or self.max_iters > 0,
             "--epochs {} leaves nothing to train after --start-epoch {}".format(
                 self.epochs, self.start_epoch)),
            (self.warmup_epochs < self.epochs,
             "--warmup-epochs {} must be smaller than --epochs {}".format(
                 self.warmup_epochs, self.epochs)),
            (self.kvstore != 'dist_async',
             "--kvstore dist_async is not supported: asynchronous updates run on the "
             "servers (MXNet requires update_on_kvstore for them), where FP16 loss-scale "
             "skipping, FP32 master weights and NaN rollback cannot act. Use dist_sync"),
            (self.kvstore in KVSTORES,
             "--kvstore {!r}: choose one of {}".format(self.kvstore, list(KVSTORES))),
            (self.dataset in ('custom', 'rec') or self.classes is None or
             self.dataset == 'synthetic',
             "--classes only applies to --dataset custom/rec/synthetic; VOC and COCO have "
             "fixed classes"),
            (self.dataset != 'custom' or self.dataset_root,
             "--dataset custom needs --dataset-root DIR (a Pascal VOC layout folder)"),
            (self.dataset_root is None or os.path.isdir(self.dataset_root),
             "--dataset-root {!r} does not exist or is not a folder".format(self.dataset_root)),
            (self.val_interval > 0 and self.save_interval > 0 and self.log_interval > 0,
             "--val-interval, --save-interval and --log-interval must be positive"),
            (self.max_iters >= 0, "--max-iters must be >= 0"),
            (self.num_workers >= 0,
             "-j/--num-workers must be >= 0 (0 loads data in the main process), got {}".format(
                 self.num_workers)),
            (len(set(self.contexts)) == len(self.contexts),
             "--ctx {} names a device twice; list each device once".format(
                 ','.join(self.contexts))),
            (self.classes is None or len(set(self.classes)) == len(self.classes),
             "--classes names {} more than once; each class needs one name".format(
                 sorted({c for c in (self.classes or ()) if self.classes.count(c) > 1}))),
            (self.precision in ('fp16', 'amp') or self.loss_scale in ('dynamic', 'none'),
             "--loss-scale {} only applies with --fp16 or --amp (FP32 training does not scale "
             "the loss)".format(self.loss_scale)),
            (self.checkpoint_every >= 0,
             "--checkpoint-every must be >= 0 (0: at epoch ends only), got {}".format(
                 self.checkpoint_every)),
            (self.max_expand >= 1.0,
             "--max-expand must be >= 1 (the largest zoom-out; 1: none), got {}".format(
                 self.max_expand)),
            (self.accumulate >= 1,
             "--accumulate must be >= 1 (batches per optimizer update), got {}".format(
                 self.accumulate)),
            (self.clip_grad >= 0, "--clip-grad must be >= 0 (0: no clipping), got {}".format(
                self.clip_grad)),
            (0.0 < self.ema_decay < 1.0,
             "--ema-decay must be between 0 and 1, got {}".format(self.ema_decay)),
            (self.ema or self.ema_decay == TrainConfig.ema_decay,
             "--ema-decay needs --ema (it sets the decay of the EMA weights)"),
            (self.cache in ('', 'ram', 'disk'),
             "--cache {!r}: choose ram or disk (or leave it out)".format(self.cache)),
            (self.pretrained in ('', 'voc', 'coco') or os.path.isfile(self.pretrained),
             "--pretrained {!r}: no such file; give a .params file, a checkpoint, or 'voc' / "
             "'coco' (GluonCV's published weights)".format(self.pretrained)),
            (not (self.horovod and self.kvstore.startswith('dist')),
             "--horovod and --kvstore {} are two ways to distribute; pick one".format(
                 self.kvstore)),
            (self.self_check in SELF_CHECKS,
             "--self-check {!r}: choose one of {}".format(self.self_check, list(SELF_CHECKS))),
            (self.self_check != 'fallback' or not (self.horovod or
                                                   self.kvstore.startswith('dist')),
             "--self-check fallback cannot be used with several workers (each could fall "
             "back on its own, and workers must train in one precision); use --self-check "
             "stop"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.precision in ('fp16', 'amp'):
            _check_loss_scale(self.loss_scale)
        return self


def _check_loss_scale(text):
    if text in ('dynamic', 'none'):
        return
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0:
        raise ConfigError("--loss-scale must be 'dynamic', 'none' or a positive number, got "
                          "{!r}".format(text))


def parse_contexts(gpus, ctx=None):
    """Device names from GluonCV's `--gpus` ('' = CPU) or an explicit `--ctx` list.

    Returns e.g. ('gpu:0', 'gpu:1') or ('cpu:0',).
    """
    if ctx:
        names = [c.strip().lower() for c in ctx.split(',') if c.strip()]
        for name in names:
            kind, _, index = name.partition(':')
            if kind not in ('cpu', 'gpu') or (index and not index.isdigit()):
                raise ConfigError("--ctx {!r}: use a comma list like cpu:0,cpu:1 or gpu:0,gpu:1"
                                  .format(ctx))
        return tuple(n if ':' in n else n + ':0' for n in names)
    ids = [g.strip() for g in str(gpus).split(',') if g.strip()]
    for g in ids:
        if not g.isdigit():
            raise ConfigError("--gpus {!r}: use GPU ids like 0,1 or '' for CPU".format(gpus))
    return tuple('gpu:' + g for g in ids) or ('cpu:0',)
