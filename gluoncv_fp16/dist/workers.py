"""How this process takes part in a run: kvstore, rank, world size, gradient scale,
its devices, and the per-step health vote that keeps workers in lock step.

Three set-ups, as in GluonCV: one process (local/device kvstore over its devices),
MXNet's parameter server (``--kvstore dist_*``, processes from scripts/launch.py) and
Horovod (``--horovod``, processes from horovodrun, one device each).
"""
import logging

import mxnet as mx

from ..train.config import ConfigError
from .distributed import init_horovod, prepare_dist_params, require_launcher, worker_info

__all__ = ['WorkerSetup', 'setup_workers', 'check_horovod_config', 'horovod_device',
           'prepare_dist_params', 'describe']

logger = logging.getLogger(__name__)


# kvstore key of the per-step health vote: far above the Trainer's keys (parameter indices)
HEALTH_KEY = 1 << 30
# Horovod tensor name of the same vote
HEALTH_NAME = 'gluoncv_fp16.health_vote'


class WorkerSetup:
    """Attributes: kvstore (name, KVStore or None), rank, num_workers, hvd (module or
    None), grad_scale (extra gradient normaliser), no_switch_reason, no_rollback_reason,
    contexts (this process's devices when the set-up chose them, e.g. Horovod's one
    device by local rank; None: the configured ones)."""

    def __init__(self, kvstore, rank=0, num_workers=1, hvd=None, grad_scale=1.0,
                 no_switch_reason=None, contexts=None):
        self.kvstore = kvstore
        self.rank = rank
        self.num_workers = num_workers
        self.hvd = hvd
        self.grad_scale = grad_scale
        self.no_switch_reason = no_switch_reason
        self.contexts = contexts
        self._vote_ready = False

    @property
    def is_chief(self):
        return self.rank == 0

    @property
    def no_rollback_reason(self):
        """Why a NaN rollback cannot be coordinated here (None: it can). Every set-up has
        a collective health vote (:meth:`all_healthy`), so rollback is always possible."""
        return None

    def all_healthy(self, healthy):
        """True when this step was healthy on every worker.

        A rollback must happen on all workers at the same step or not at all: they hold
        identical weights only while they apply identical updates, and one worker can see
        a non-finite loss a step before the others (its NaN gradients reach them through
        the summed update). Every worker contributes 1 (healthy) or 0 to a sum over all
        workers at every step -- a Horovod allreduce, or on a dist kvstore a pushpull of
        one extra key -- and rolls back when the sum is short. A collective call: every
        worker must make it at every step. One process needs no vote.
        """
        if self.num_workers == 1:
            return healthy
        vote = mx.nd.array([1.0 if healthy else 0.0])
        if self.hvd is not None:
            vote = self.hvd.allreduce(vote, op=self.hvd.Sum, name=HEALTH_NAME)
        else:
            if not self._vote_ready:
                self.kvstore.init(HEALTH_KEY, mx.nd.zeros((1,)))
                self._vote_ready = True
            self.kvstore.pushpull(HEALTH_KEY, vote, out=vote)
        return int(round(float(vote.asscalar()))) == self.num_workers

    def wait_for_all(self):
        """Return once every worker has called this (e.g. the chief finished writing)."""
        self.all_healthy(True)


def setup_workers(cfg, contexts):
    """Create the kvstore / Horovod for `cfg` and describe this process's part."""
    if cfg.horovod:
        return _setup_horovod(cfg, contexts)
    if cfg.kvstore.startswith('dist'):
        if cfg.fp32_warmup_epochs:
            raise ConfigError(
                "--fp32-warmup-epochs with --kvstore {}: a dist kvstore keeps each key's "
                "dtype, so precision cannot change mid-run. Run the FP32 warm-up as its own "
                "job, then a new --fp16 job with --resume".format(cfg.kvstore))
        try:
            require_launcher(cfg.kvstore)
        except RuntimeError as err:
            raise ConfigError(str(err)) from None
        kv = mx.kv.create(cfg.kvstore)
        rank, size = worker_info(kv)
        # pushpull sums the workers' gradients; each worker normalises by its own batch.
        return WorkerSetup(kv, rank, size, grad_scale=float(size),
                           no_switch_reason='--kvstore {} keeps each key\'s dtype'.format(
                               cfg.kvstore))
    return WorkerSetup(cfg.kvstore if len(contexts) > 1 else None)


def _setup_horovod(cfg, contexts):
    """Horovod: refuse what it cannot do before `hvd.init()`, then pick this process's
    device. DistributedTrainer averages gradients over the workers itself (grad_scale 1),
    and a new trainer after a precision switch broadcasts and all-reduces like the first,
    so precision may change mid-run."""
    check_horovod_config(cfg, contexts)
    try:
        hvd, rank, size, local_rank = init_horovod()
    except ImportError as err:
        raise ConfigError(str(err)) from None
    return WorkerSetup(None, rank, size, hvd=hvd,
                       contexts=[horovod_device(contexts, local_rank)])


def check_horovod_config(cfg, contexts):
    """Raise `ConfigError` for settings a Horovod process cannot train with."""
    if cfg.syncbn:
        raise ConfigError(
            "--syncbn with --horovod: MXNet's SyncBatchNorm synchronises the devices of one "
            "process and a Horovod process trains on one device, so it would do nothing "
            "(there is no Horovod SyncBatchNorm for MXNet). Drop --syncbn (each process "
            "normalises over its own batch), or train one machine's devices in one process "
            "without Horovod: --gpus 0,1,2,3 --syncbn")
    cpus = [c for c in contexts if c.device_type == 'cpu']
    if len(cpus) > 1:
        raise ConfigError(
            "--horovod trains one device per process (Horovod all-reduces only the first "
            "device's gradients), got {} CPU contexts; use one (--gpus '') and start more "
            "processes (horovodrun -np N)".format(len(cpus)))


def horovod_device(contexts, local_rank):
    """The one device a Horovod process trains on, chosen by its rank on this host.

    CPU: the configured CPU context. GPU, one id ``g`` (``--gpus 0``, the default): GPU
    ``g + local_rank``, so ranks on a host take consecutive GPUs as in GluonCV
    (``mx.gpu(hvd.local_rank())``). GPU, several ids: the `local_rank`-th of them.
    """
    if contexts[0].device_type == 'cpu':
        return contexts[0]
    if len(contexts) == 1:
        return mx.gpu(contexts[0].device_id + local_rank)
    if local_rank >= len(contexts):
        raise ConfigError(
            "--horovod: local rank {} has no GPU of the {} listed ({}); list one GPU per "
            "process on each host, or one id to count from (--gpus 0)".format(
                local_rank, len(contexts), ','.join(str(c.device_id) for c in contexts)))
    return contexts[local_rank]


def describe(cfg, workers):
    """The batch and LR arithmetic of a distributed run, for the log."""
    if workers.num_workers == 1:
        return None
    return ('{} workers x batch {} = global batch {}; gradients averaged over the global '
            'batch; --lr {} is used as given (scale it yourself, e.g. linearly with the '
            'global batch)'.format(workers.num_workers, cfg.batch_size,
                                   workers.num_workers * cfg.batch_size, cfg.lr))
