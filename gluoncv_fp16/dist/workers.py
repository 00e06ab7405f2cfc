"""How this process takes part in a run: kvstore, rank, world size, gradient scale.

Three set-ups, as in GluonCV: one process (local/device kvstore over its devices),
MXNet's parameter server (``--kvstore dist_*``, processes from scripts/launch.py) and
Horovod (``--horovod``).
"""
import logging

import mxnet as mx

from ..train.config import ConfigError
from .distributed import init_horovod, require_launcher, worker_info

__all__ = ['WorkerSetup', 'setup_workers', 'prepare_dist_params', 'describe']

logger = logging.getLogger(__name__)


# kvstore key of the per-step health vote: far above the Trainer's keys (parameter indices)
HEALTH_KEY = 1 << 30


class WorkerSetup:
    """Attributes: kvstore (name, KVStore or None), rank, num_workers, hvd (module or
    None), grad_scale (extra gradient normaliser), no_switch_reason, no_rollback_reason."""

    def __init__(self, kvstore, rank=0, num_workers=1, hvd=None, grad_scale=1.0,
                 no_switch_reason=None):
        self.kvstore = kvstore
        self.rank = rank
        self.num_workers = num_workers
        self.hvd = hvd
        self.grad_scale = grad_scale
        self.no_switch_reason = no_switch_reason
        self._vote_ready = False

    @property
    def is_chief(self):
        return self.rank == 0

    @property
    def no_rollback_reason(self):
        """Why a NaN rollback cannot be coordinated here (None: it can)."""
        if self.hvd is not None and self.num_workers > 1:
            return ('under Horovod the workers cannot agree on a rollback (no collective '
                    'health vote is implemented for it)')
        return None

    def all_healthy(self, healthy):
        """True when this step was healthy on every worker.

        A rollback must happen on all workers at the same step or not at all: they hold
        identical weights only while they apply identical updates, and one worker can see
        a non-finite loss a step before the others (its NaN gradients reach them through
        the summed update). On a dist kvstore every worker pushes its vote (1 healthy, 0
        not) to one extra key at every step and pulls the sum; a collective call, so every
        worker must make it at every step. One process needs no vote.
        """
        if self.num_workers == 1 or self.hvd is not None:
            return healthy
        if not self._vote_ready:
            self.kvstore.init(HEALTH_KEY, mx.nd.zeros((1,)))
            self._vote_ready = True
        vote = mx.nd.array([1.0 if healthy else 0.0])
        self.kvstore.pushpull(HEALTH_KEY, vote, out=vote)
        return int(round(float(vote.asscalar()))) == self.num_workers

    def wait_for_all(self):
        """Return once every worker has called this (e.g. the chief finished writing)."""
        self.all_healthy(True)


def setup_workers(cfg, contexts):
    """Create the kvstore / Horovod for `cfg` and describe this process's part."""
    if cfg.horovod:
        try:
            hvd, rank, size, _ = init_horovod()
        except ImportError as err:
            raise ConfigError(str(err)) from None
        # DistributedTrainer averages gradients over workers itself.
        return WorkerSetup(None, rank, size, hvd=hvd)
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


def prepare_dist_params(params):
    """Give every parameter fresh arrays in MXNet's plain memory layout before a Trainer on
    a dist kvstore is built from them.

    Why (measured with MXNet 1.9.1, oneDNN CPU build, 2 workers + 1 server on loopback, 3
    runs out of 3): an inference-mode forward -- the shape forward at build time, or a
    validation pass -- lets oneDNN convolutions re-lay out their weights in place. The
    Trainer initialises each key with ``kvstore.broadcast``; on a dist kvstore rank 0
    pushes the value from its raw buffer, which fails inside the engine for such an array
    ("We can't generate TBlob for MKLDNN data"). The failure is recorded on the array
    instead of raised, so rank 0 goes through the per-key init barrier without having
    initialised the key; another worker's pull then reaches the server first and it
    aborts with "init <key> first". `reset_ctx` re-creates the arrays (values unchanged)
    in the plain layout, which the push can read.

    Parameters
    ----------
    params : gluon.ParameterDict
        Initialised parameters, all on the same contexts.
    """
    for param in params.values():
        param.reset_ctx(param.list_ctx())


def describe(cfg, workers):
    """The batch and LR arithmetic of a distributed run, for the log."""
    if workers.num_workers == 1:
        return None
    return ('{} workers x batch {} = global batch {}; gradients averaged over the global '
            'batch; --lr {} is used as given (scale it yourself, e.g. linearly with the '
            'global batch)'.format(workers.num_workers, cfg.batch_size,
                                   workers.num_workers * cfg.batch_size, cfg.lr))
