"""The settings of one training run, declared once and validated before any work starts.

Each field of `TrainConfig` is the one declaration of its command-line flag(s): names,
default as typed, help, the ``--help`` group (GluonCV's ``train_yolo3.py`` flags or this
package's), how the typed text becomes the value, and the check of the value on its
own (:mod:`gluoncv_fp16.utils.options`). The command line (:mod:`gluoncv_fp16.cli`),
this typed config, the one-line errors and ``docs/options.md`` all come from these
declarations. :meth:`TrainConfig.validate` is the one validation pass: every per-option
check, then every check of a combination of options.

`TrainConfig` is built once and never mutated; derived values are properties.
"""
import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from ..data.datasets import DATASETS
from ..data.options import (class_names, classes_problem, data_side_problem, dataset_problem,
                            dataset_root_problem, num_workers_problem)
from ..data.registry import dataset_kind, dataset_kinds, dataset_option_problems
from ..distributed.distributed import require_launcher
from ..model_zoo.zoo import DEFAULT_NETWORK, network_help, network_problem
from ..precision.policy import (flags_of, get_policy, policies, policy_names,
                                precision_from_flags)
from ..precision.syncbn import cpu_temp_pool_shortfall
from ..utils.options import failed_checks, flag, one_of, rule, setting
from ..errors import ConfigError
from .freeze import freeze_problem, parse_freeze

__all__ = ['TrainConfig', 'ConfigError', 'parse_contexts', 'GLUONCV_FLAGS', 'OUR_FLAGS',
           'FLAG_GROUPS', 'DATASET_FIELDS', 'dataset_config']

LR_MODES = ('step', 'poly', 'cosine')
KVSTORES = ('local', 'device', 'nccl', 'dist_sync', 'dist_device_sync')
SELF_CHECKS = ('stop', 'fallback', 'off')

GLUONCV_FLAGS = 'GluonCV train_yolo3.py flags'
OUR_FLAGS = 'gluoncv_fp16 flags'
FLAG_GROUPS = (GLUONCV_FLAGS, OUR_FLAGS)

# The fields that say which dataset a run reads. A checkpoint's recorded config holds
# them: the commands that evaluate or measure a checkpoint rebuild its data from them
# (:func:`dataset_config`) and declare their own flags from these fields.
DATASET_FIELDS = ('dataset', 'dataset_root', 'train_json', 'val_json', 'image_root',
                  'data_yaml', 'classes')


def _read_by(flag):
    """The --dataset values that read `flag` (from the dataset registry), for help texts."""
    return '/'.join(kind.name for kind in dataset_kinds() if flag in kind.reads)


def gluoncv(*names, **kwargs):
    """A flag of GluonCV's train_yolo3.py (same meaning and default)."""
    return flag(*names, group=GLUONCV_FLAGS, **kwargs)


def ours(*names, **kwargs):
    """A flag this package adds."""
    return flag(*names, group=OUR_FLAGS, **kwargs)


# ----- converters: typed text -> value (ConfigError for text that cannot be read) ------------
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


def _precision(*switches):
    """The mode name from the precision switches (:func:`_precision_flags` order)."""
    try:
        return precision_from_flags(*switches)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _precision_flags():
    """One switch per precision mode that has one, declared by the mode's registry entry
    (GluonCV's group for a switch GluonCV's train_yolo3.py has)."""
    return [flag(p.flag, switch=True, help=p.summary,
                 group=GLUONCV_FLAGS if p.gluoncv_flag else OUR_FLAGS)
            for p in policies(lambda p: p.flag)]


_WARMUP_FLAGS = flags_of(policies(lambda p: p.allows_fp32_warmup))
_SCALED_FLAGS = flags_of(policies(lambda p: p.needs_loss_scaling))
_HALF_FLAGS = '/'.join(p.flag for p in policies(lambda p: p.runs_float16 and p.flag))


def _epochs(text):
    try:
        return tuple(int(e) for e in text.split(',') if e.strip())
    except ValueError:
        raise ConfigError('--lr-decay-epoch {!r}: use comma-separated epochs like 160,180'
                          .format(text)) from None


# ----- per-option checks ----------------------------------------------------------------------
def _loss_scale_problem(text):
    if text in ('dynamic', 'none'):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value > 0:
        return None
    return ("--loss-scale must be 'dynamic', 'none' or a positive number, got {!r}"
            .format(text))


def _tensorboard_missing(on):
    if on and importlib.util.find_spec('tensorboardX') is None:
        return "--tensorboard needs tensorboardX: pip install -e '.[tensorboard]'"
    return None


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a run, each declared with its flag(s). Defaults are GluonCV's
    `train_yolo3.py` defaults, except `dataset` (the built-in synthetic set)."""
    network: str = setting(
        gluoncv('--network', default=DEFAULT_NETWORK, help=network_help()),
        check=network_problem)
    data_shape: int = setting(
        gluoncv('--data-shape', default=416, help='input size, a multiple of 32'),
        check=data_side_problem)
    batch_size: int = setting(
        gluoncv('--batch-size', default=64, help='images per step, all devices'),
        check=rule(lambda v: v > 0, '--batch-size must be positive, got {}'))
    dataset: str = setting(
        gluoncv('--dataset', default='synthetic',
                help='{} (docs/data.md)'.format(', '.join(DATASETS))),
        check=dataset_problem)
    dataset_root: Optional[str] = setting(
        ours('--dataset-root',
             help='dataset folder ({}; a default for {})'.format(
                 _read_by('--dataset-root'), '/'.join(
                     k.name for k in dataset_kinds() if k.default_root))),
        check=dataset_root_problem)
    train_json: Optional[str] = setting(
        ours('--train-json', metavar='FILE',
             help='coco-json: the training split\'s COCO JSON (CVAT, Roboflow, Label Studio)'),
        check=rule(lambda v: v is None or os.path.isfile(v),
                   '--train-json {!r}: no such file'))
    val_json: Optional[str] = setting(
        ours('--val-json', metavar='FILE', help="coco-json: the validation split's COCO JSON"),
        check=rule(lambda v: v is None or os.path.isfile(v), '--val-json {!r}: no such file'))
    image_root: Optional[str] = setting(
        ours('--image-root', metavar='DIR',
             help="coco-json: the images' folder (default: beside the JSON, or its images/)"),
        check=rule(lambda v: v is None or os.path.isdir(v),
                   '--image-root {!r} does not exist or is not a folder'))
    data_yaml: Optional[str] = setting(
        ours('--data', metavar='FILE.yaml',
             help='yolo: the Ultralytics data.yaml (path, train, val, names)'),
        check=rule(lambda v: v is None or os.path.isfile(v), '--data {!r}: no such file'))
    classes: Optional[Tuple[str, ...]] = setting(
        ours('--classes',
             help='comma-separated class names ({}); without it a custom set takes the '
                  'names in its annotations, logged with their counts'.format(
                      _read_by('--classes'))),
        convert=class_names, check=classes_problem)
    num_workers: int = setting(
        gluoncv('-j', '--num-workers', default=4, help='data loading worker processes'),
        check=num_workers_problem)
    contexts: Tuple[str, ...] = setting(
        gluoncv('--gpus', default='0', help="GPU ids like 0,1; '' trains on the CPU"),
        ours('--ctx', help='explicit devices, e.g. cpu:0,cpu:1 (overrides --gpus); --syncbn '
                           'on several CPU contexts needs `export MXNET_CPU_TEMP_COPY=1024` '
                           'first'),
        convert=parse_contexts,
        check=rule(lambda v: len(set(v)) == len(v),
                   lambda v: '--ctx {} names a device twice; list each device once'.format(
                       ','.join(v))))
    epochs: int = setting(gluoncv('--epochs', default=200, help='epochs to train'))
    resume: str = setting(
        gluoncv('--resume', default='',
                help="checkpoint to continue from (.ckpt: everything -- weights, optimizer, "
                     "loss scaler, precision phase, LR position, RNG; GluonCV .params: "
                     "weights, with --start-epoch), or 'auto' for this run's last one (its "
                     "_best.ckpt when _last.ckpt is damaged)"),
        convert=str.strip)
    start_epoch: int = setting(
        gluoncv('--start-epoch', default=0,
                help='first epoch when resuming from a weights-only .params file'))
    lr: float = setting(gluoncv('--lr', default=0.001, help='learning rate'),
                        check=rule(lambda v: v > 0, '--lr must be positive, got {}'))
    lr_mode: str = setting(gluoncv('--lr-mode', default='step', help='step, poly or cosine'),
                           check=one_of('--lr-mode', LR_MODES))
    lr_decay: float = setting(gluoncv('--lr-decay', default=0.1, help='step decay factor'))
    lr_decay_period: int = setting(
        gluoncv('--lr-decay-period', default=0,
                help='decay every N epochs (overrides --lr-decay-epoch)'))
    lr_decay_epoch: Tuple[int, ...] = setting(
        gluoncv('--lr-decay-epoch', default='160,180', help='epochs at which to decay'),
        convert=_epochs)
    warmup_lr: float = setting(
        gluoncv('--warmup-lr', default=0.0, help='LR at the start of warm-up'))
    warmup_epochs: int = setting(
        gluoncv('--warmup-epochs', default=0, help='linear LR warm-up epochs'))
    momentum: float = setting(gluoncv('--momentum', default=0.9, help='SGD momentum'))
    wd: float = setting(gluoncv('--wd', default=0.0005, help='weight decay'))
    log_interval: int = setting(
        gluoncv('--log-interval', default=100, help='log every N batches'),
        check=rule(lambda v: v > 0, '--log-interval must be positive, got {}'))
    save_prefix: str = setting(
        gluoncv('--save-prefix', default='', help='prefix of every output file'))
    save_interval: int = setting(
        gluoncv('--save-interval', default=10,
                help='also save {prefix}_{epoch:04d}_{map:.4f}.params every N epochs'),
        check=rule(lambda v: v > 0, '--save-interval must be positive, got {}'))
    val_interval: int = setting(
        gluoncv('--val-interval', default=1, help='validate every N epochs'),
        check=rule(lambda v: v > 0, '--val-interval must be positive, got {}'))
    seed: int = setting(gluoncv('--seed', default=233, help='random seed'))
    num_samples: int = setting(
        gluoncv('--num-samples', default=-1,
                help='training images per epoch for the LR schedule (-1: dataset size)'))
    syncbn: bool = setting(
        gluoncv('--syncbn', switch=True, help='synchronised BatchNorm across devices (FP16 too)'))
    no_random_shape: bool = setting(
        gluoncv('--no-random-shape', switch=True,
                help='train at --data-shape only (no multi-scale 320..608)'))
    no_wd: bool = setting(gluoncv('--no-wd', switch=True, help='no weight decay on BN and bias'))
    mixup: bool = setting(gluoncv('--mixup', switch=True, help='mixup augmentation'))
    no_mixup_epochs: int = setting(
        gluoncv('--no-mixup-epochs', default=20, help='turn mixup off for the last N epochs'))
    label_smooth: bool = setting(gluoncv('--label-smooth', switch=True, help='label smoothing'))
    precision: str = setting(*_precision_flags(), convert=_precision,
                             check=one_of('precision', policy_names()))
    fp32_warmup_epochs: int = setting(
        ours('--fp32-warmup-epochs', default=0,
             help='with {}: train the first N epochs in FP32, then in that mode (same run; '
                  'master weights and momentum kept)'.format(_WARMUP_FLAGS)),
        check=rule(lambda v: v >= 0, '--fp32-warmup-epochs must be >= 0'))
    loss_scale: str = setting(
        ours('--loss-scale', default='dynamic',
             help="'dynamic' (backs off on overflow, grows after 1000 clean steps), 'none' "
                  "(the plain FP16 recipe) or a fixed number"),
        check=_loss_scale_problem)
    kvstore: str = setting(
        ours('--kvstore', default='device',
             help='local, device, nccl, dist_sync or dist_device_sync (dist_*: start the '
                  'processes with scripts/launch.py; docs/distributed.md)'),
        check=lambda v: (
            "--kvstore dist_async is not supported: asynchronous updates run on the servers "
            "(MXNet requires update_on_kvstore for them), where FP16 loss-scale skipping, "
            "FP32 master weights and NaN rollback cannot act. Use dist_sync"
            if v == 'dist_async' else one_of('--kvstore', KVSTORES)(v)))
    horovod: bool = setting(
        gluoncv('--horovod', switch=True,
                help='distribute with Horovod, one process per device (bash '
                     'scripts/install_horovod.sh first); start it with scripts/launch.py '
                     '--horovod -n N -- python train_yolo3.py --horovod ..., or horovodrun '
                     '... sh -c "python train_yolo3.py ..." (without sh -c horovodrun takes '
                     '--network for its own option; docs/distributed.md)'))
    max_iters: int = setting(
        ours('--max-iters', default=0, help='stop after N iterations (smoke runs)'),
        check=rule(lambda v: v >= 0, '--max-iters must be >= 0'))
    strict_data: bool = setting(
        ours('--strict-data', switch=True,
             help='fail (one line naming the file, exit 2) on the first bad sample instead '
                  'of repairing or skipping it. Damage visible in the files (missing, empty, '
                  'truncated, no image header) is found by a start-up scan before training; '
                  'the rest when read. Grayscale, RGBA and 16-bit images are valid. The '
                  "dataset report's errors (boxes outside the image, zero-area or duplicate "
                  'boxes, classes only in validation) stop the run too, before it writes '
                  'anything (docs/data.md)'))
    auto_anchor: bool = setting(
        ours('--auto-anchor', switch=True,
             help='fit the anchors to the training boxes when the best possible recall '
                  '(BPR: share of boxes with an anchor within --anchor-threshold in width '
                  'and height, at --data-shape) of the network\'s anchors is below 0.98: '
                  'k-means and a seeded evolution to 9 anchors, kept only if their BPR is '
                  'higher. The BPR is logged in every run; the anchors go into the weights, '
                  'checkpoints and exports, and into <prefix>_anchors.json (docs/your_data.md)'))
    anchor_threshold: float = setting(
        ours('--anchor-threshold', default=4.0, metavar='RATIO',
             help='largest width or height ratio between a box and an anchor that still '
                  'counts as a fit, for the BPR and --auto-anchor'),
        check=rule(lambda v: 1 < v < float('inf'),
                   '--anchor-threshold must be a ratio above 1 (e.g. 4.0), got {}'))
    nan_fallback_iters: int = setting(
        ours('--nan-fallback-iters', default=100,
             help='after a NaN rollback, iterations trained in FP32 before FP16 again (dist '
                  'runs: all workers roll back together; dist_sync has no FP32 fallback, '
                  'Horovod keeps it)'))
    max_recoveries: int = setting(
        ours('--max-recoveries', default=3, help='NaN rollbacks allowed before the run stops'))
    snapshot_interval: int = 50        # iterations between NaN-guard snapshots
    plots: bool = setting(
        ours('--no-plots', switch=True,
             help='do not draw PNG plots (the labels picture <prefix>_labels.png at the '
                  'start, the curves at the end)'),
        convert=lambda off: not off)
    pretrained_base: Optional[bool] = setting(
        ours('--pretrained-base', negatable=True,
             help='ImageNet backbone weights (default: on, off for --dataset {}), '
                  'downloaded once into ~/.mxnet/models ($MXNET_HOME/models); offline, '
                  'train from scratch with --no-pretrained-base (or --pretrained FILE)'.format(
                      '/'.join(k.name for k in dataset_kinds() if not k.pretrained_base))))
    accumulate: int = setting(
        ours('--accumulate', default=1,
             help='batches per optimizer update (gradient accumulation); the effective '
                  'batch is --batch-size x N; loss-scale skips, the LR schedule and the '
                  'all-reduce count updates'),
        check=rule(lambda v: v >= 1, '--accumulate must be >= 1 (batches per optimizer '
                                     'update), got {}'))
    clip_grad: float = setting(
        ours('--clip-grad', default=0.0, metavar='MAXNORM',
             help='clip the global L2 norm of the unscaled gradients, all devices and '
                  'workers (0: off); logged per step'),
        check=rule(lambda v: v >= 0, '--clip-grad must be >= 0 (0: no clipping), got {}'))
    ema: bool = setting(
        ours('--ema', switch=True,
             help='keep an EMA of the FP32 weights, updated by applied steps only; '
                  'validate, save _best and export it'))
    ema_decay: float = setting(
        ours('--ema-decay', default=0.9999,
             help='EMA decay (ramped as YOLOv5: d * (1 - exp(-updates / RAMP)))'),
        check=rule(lambda v: 0.0 < v < 1.0, '--ema-decay must be between 0 and 1, got {}'))
    ema_ramp: float = setting(
        ours('--ema-ramp', default=2000.0, metavar='RAMP',
             help="updates over which the EMA decay ramps up (YOLOv5's 2000); a run of "
                  'fewer updates than about 2x RAMP ends with a decay well below '
                  '--ema-decay, so short runs and fine-tuning want a smaller one'),
        check=rule(lambda v: v > 0, '--ema-ramp must be > 0 optimizer updates, got {}'))
    patience: int = setting(
        ours('--patience', default=0, metavar='N',
             help='stop when validation mAP has not improved for N epochs, every worker '
                  'after the same epoch (0: off); _best keeps the best'),
        check=rule(lambda v: v >= 0, '--patience must be >= 0 epochs (0: off), got {}'))
    freeze: int = setting(
        ours('--freeze', default='0', metavar='STAGES',
             help="freeze the first 1-3 backbone stages (GluonCV's net.stages), or all with "
                  "'backbone': no gradient, no update, BatchNorm on its running statistics, "
                  "as loaded (0: off)"),
        convert=parse_freeze, check=freeze_problem)
    tensorboard: bool = setting(
        ours('--tensorboard', switch=True,
             help="TensorBoard event files under the save prefix (pip install "
                  "'.[tensorboard]')"),
        check=_tensorboard_missing)
    augment: bool = True               # off: deterministic alignment runs (align_check)
    max_expand: float = setting(
        ours('--max-expand', default=4.0,
                help="largest zoom-out of the random expand augmentation (GluonCV's recipe: "
                     "4, objects shrink up to 4x; 1: none). Small inputs and small datasets "
                     "learn much faster with less (docs/training.md)"),
        check=rule(lambda v: v >= 1.0, '--max-expand must be >= 1 (the largest zoom-out; 1: '
                                       'none), got {}'))
    shuffle: bool = True
    amp_fp16_ops: Optional[Tuple[str, ...]] = None  # AMP's FP16 op list (None: MXNet's)
    checkpoint_every: int = setting(
        ours('--checkpoint-every', default=0, metavar='N',
             help='also save the resumable state every N iterations, mid-epoch (0: at epoch '
                  'ends only); a resume continues exactly there'),
        check=rule(lambda v: v >= 0, '--checkpoint-every must be >= 0 (0: at epoch ends '
                                     'only), got {}'))
    cache: str = setting(
        ours('--cache', choices=('ram', 'disk'),
             help='keep decoded images (in memory, or in a file next to the dataset) so that '
                  'epochs after the first decode nothing; the size estimate is logged first, '
                  'RAM is refused when it would not fit'),
        convert=lambda v: v or '',
        check=rule(lambda v: v in ('', 'ram', 'disk'),
                   '--cache {!r}: choose ram or disk (or leave it out)'))
    self_check: str = setting(
        ours('--self-check', default='stop', choices=('stop', 'fallback'),
             help='{}: one step is compared with FP32 on the devices at start-up (losses, '
                  'gradient cosine and norm); on disagreement stop (exit 2) or train in FP32 '
                  '(docs/benchmark.md)'.format(_HALF_FLAGS)),
        ours('--no-self-check', switch=True, help='skip that start-up check'),
        convert=lambda mode, off: 'off' if off else mode,
        check=one_of('--self-check', SELF_CHECKS))
    pretrained: str = setting(
        ours('--pretrained', default='',
             help="start from these weights: 'voc' / 'coco' (GluonCV's), a .params file or a "
                  "checkpoint (of an --ema run: its EMA weights); shared classes keep their "
                  "predictions (by name)"),
        convert=str.strip,
        check=rule(lambda v: v in ('', 'voc', 'coco') or os.path.isfile(v),
                   "--pretrained {!r}: no such file; give a .params file, a checkpoint, or "
                   "'voc' / 'coco' (GluonCV's published weights)"))

    @property
    def model_name(self):
        return 'yolo3_{}_{}'.format(self.network, dataset_kind(self.dataset).model_suffix)

    @property
    def dataset_flags(self):
        """{flag: value} of the flags that describe the dataset (see data/registry.py)."""
        return {'--dataset-root': self.dataset_root, '--classes': self.classes,
                '--train-json': self.train_json, '--val-json': self.val_json,
                '--image-root': self.image_root, '--data': self.data_yaml}

    @property
    def uses_pretrained_base(self):
        """GluonCV always starts from an ImageNet backbone; the synthetic set trains from
        scratch (offline machines, tiny images) unless --pretrained-base says otherwise,
        and --pretrained replaces the backbone's weights anyway."""
        if self.pretrained_base is None:
            return dataset_kind(self.dataset).pretrained_base and not self.pretrained
        return bool(self.pretrained_base)

    @property
    def run_name(self):
        return 'yolo3_{}_{}'.format(self.network, self.dataset)

    @property
    def run_prefix(self):
        """Prefix of every file the run writes (GluonCV: save_prefix + net name)."""
        return self.save_prefix + self.run_name

    @property
    def distributed(self):
        """Several worker processes: Horovod or a dist kvstore."""
        return self.horovod or self.kvstore.startswith('dist')

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    def validate(self):
        """The one validation pass: raise `ConfigError` for the first impossible setting,
        each option on its own first (in declaration order), then the combinations;
        returns self.

        Environment variables are settings too (MXNET_CPU_TEMP_COPY for --syncbn, the
        launcher's for a dist kvstore). Checks that need more run where training meets
        what they check, in the order a user fixes things: devices (GPU present, FP16
        runnable), then data, then downloads (:mod:`.build`); Horovod's import and each
        rank's device when the workers are set up (:mod:`..distributed.workers`).
        """
        for message in failed_checks(self):
            raise ConfigError(message)
        for message in self._combination_problems():
            raise ConfigError(message)
        return self

    def _combination_problems(self):
        """Messages of the checks of several options, in order."""
        cpus = sum(c.startswith('cpu') for c in self.contexts)
        policy = get_policy(self.precision)
        checks = [
            (self.batch_size % max(1, len(self.contexts)) == 0,
             "--batch-size {} is not divisible by the {} devices ({}); use a multiple of {}"
             .format(self.batch_size, len(self.contexts), ','.join(self.contexts),
                     len(self.contexts))),
            (self.fp32_warmup_epochs == 0 or policy.allows_fp32_warmup,
             "--fp32-warmup-epochs needs {} (it trains FP32 first, then switches)".format(
                 _WARMUP_FLAGS)),
            (self.epochs > self.start_epoch or self.max_iters > 0,
             "--epochs {} leaves nothing to train after --start-epoch {}".format(
                 self.epochs, self.start_epoch)),
            (self.warmup_epochs < self.epochs,
             "--warmup-epochs {} must be smaller than --epochs {}".format(
                 self.warmup_epochs, self.epochs)),
            (policy.needs_loss_scaling or self.loss_scale in ('dynamic', 'none'),
             "--loss-scale {} only applies with {} (FP32 training does not scale the loss)"
             .format(self.loss_scale, _SCALED_FLAGS)),
            (self.ema or self.ema_decay == TrainConfig.ema_decay,
             "--ema-decay needs --ema (it sets the decay of the EMA weights)"),
            (self.ema or self.ema_ramp == TrainConfig.ema_ramp,
             "--ema-ramp needs --ema (it sets how fast the EMA decay ramps up)"),
            (not (self.horovod and self.kvstore.startswith('dist')),
             "--horovod and --kvstore {} are two ways to distribute; pick one".format(
                 self.kvstore)),
            (self.self_check != 'fallback' or not self.distributed,
             "--self-check fallback cannot be used with several workers (each could fall "
             "back on its own, and workers must train in one precision); use --self-check "
             "stop"),
            (not (self.kvstore.startswith('dist') and self.fp32_warmup_epochs),
             "--fp32-warmup-epochs with --kvstore {}: a dist kvstore keeps each key's "
             "dtype, so precision cannot change mid-run. Run the FP32 warm-up as its own "
             "job, then a new {} job with --resume".format(self.kvstore, _WARMUP_FLAGS)),
            (not (self.horovod and self.syncbn),
             "--syncbn with --horovod: MXNet's SyncBatchNorm synchronises the devices of one "
             "process and a Horovod process trains on one device, so it would do nothing "
             "(there is no Horovod SyncBatchNorm for MXNet). Drop --syncbn (each process "
             "normalises over its own batch), or train one machine's devices in one process "
             "without Horovod: --gpus 0,1,2,3 --syncbn"),
            (not (self.horovod and cpus > 1),
             "--horovod trains one device per process (Horovod all-reduces only the first "
             "device's gradients), got {} CPU contexts; use one (--gpus '') and start more "
             "processes (horovodrun -np N)".format(cpus)),
        ]
        yield from dataset_option_problems(self.dataset, self.dataset_flags)
        for ok, message in checks:
            if not ok:
                yield message
        # MXNet reads the variable once at start-up: all we can do is say so before any work
        shortfall = cpu_temp_pool_shortfall(cpus) if self.syncbn else None
        if shortfall:
            yield ('--syncbn on {} CPU contexts deadlocks with {}; run `export '
                   'MXNET_CPU_TEMP_COPY=1024` before starting Python (see '
                   'docs/distributed.md)'.format(cpus, shortfall))
        if self.kvstore.startswith('dist') and not self.horovod:
            try:  # without the launcher's variables ps-lite fails deep inside mx.kv.create
                require_launcher(self.kvstore)
            except RuntimeError as err:
                yield str(err)


def dataset_config(values):
    """The validated `TrainConfig` of a run on the dataset `values` describe, every other
    setting at its default: what :func:`gluoncv_fp16.train.build.build_data` needs to
    build that dataset as training did.

    Parameters
    ----------
    values : mapping
        ``{field: value}`` of `DATASET_FIELDS` (a checkpoint's recorded config, or flags);
        a missing or None field takes training's default.

    Raises
    ------
    ConfigError
        A value (or a combination: a flag the dataset does not read, one it needs) that
        training would refuse, in its one line.
    """
    given = {k: values[k] for k in DATASET_FIELDS if values.get(k) is not None}
    if 'classes' in given:  # a recorded config holds JSON lists
        given['classes'] = tuple(given['classes'])
    return TrainConfig(**given).validate()
