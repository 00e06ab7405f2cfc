"""How this process takes part in a run: kvstore, rank, world size, gradient scale,
its devices, and the per-step vote (health, stop) that keeps workers in lock step.

Three set-ups, as in GluonCV: one process (local/device kvstore over its devices),
MXNet's parameter server (``--kvstore dist_*``, processes from scripts/launch.py) and
Horovod (``--horovod``, processes from horovodrun, one device each).
"""
import logging

import mxnet as mx

from ..errors import ConfigError
from .distributed import init_horovod, prepare_dist_params, worker_info

__all__ = ['WorkerSetup', 'STOP_REQUEST', 'setup_workers', 'horovod_device', 'prepare_dist_params',
           'describe']

logger = logging.getLogger(__name__)


# kvstore key of the per-step vote: far above the Trainer's keys (parameter indices)
VOTE_KEY = 1 << 30
# Horovod tensor name of the same vote
VOTE_NAME = 'gluoncv_fp16.step_vote'
# Signals that stop a run cleanly, in the order a vote prefers them
STOP_SIGNALS = ('SIGTERM', 'SIGINT')
# A hook's stop request (`TrainLoop.request_stop`), voted after the signals
STOP_REQUEST = 'request'
_STOP_KINDS = STOP_SIGNALS + (STOP_REQUEST,)


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
        a collective vote (:meth:`vote`), so rollback is always possible."""
        return None

    def vote(self, healthy, stop=None):
        """``(all healthy, stop signal)`` of this step over every worker.

        A rollback must happen on all workers at the same step or not at all: they hold
        identical weights only while they apply identical updates, and one worker can see
        a non-finite loss a step before the others (its NaN gradients reach them through
        the summed update). A preempted job must stop at one step too, or the others wait
        forever in the next all-reduce; the signal often reaches one worker only (or at
        different steps). A hook's stop request (e.g. early stopping on the chief's mAP) is
        voted the same way. So every worker contributes ``[healthy, got SIGTERM, got
        SIGINT, a hook requested a stop]``
        to a sum over all workers at every step -- a Horovod allreduce, or on a dist
        kvstore a pushpull of one extra key -- rolls back when the first sum is short, and
        stops when any worker got a signal (SIGTERM before SIGINT) or a request. A collective call:
        every worker must make it at every step. One process needs no vote.

        Parameters
        ----------
        healthy : bool
        stop : str or None
            A name from `STOP_SIGNALS` when this worker received that signal,
            `STOP_REQUEST` when one of its hooks asked to stop.
        """
        if self.num_workers == 1:
            return healthy, stop
        ballot = mx.nd.array([1.0 if healthy else 0.0] +
                             [1.0 if stop == name else 0.0 for name in _STOP_KINDS])
        if self.hvd is not None:
            ballot = self.hvd.allreduce(ballot, op=self.hvd.Sum, name=VOTE_NAME)
        else:
            if not self._vote_ready:
                self.kvstore.init(VOTE_KEY, mx.nd.zeros(ballot.shape))
                self._vote_ready = True
            self.kvstore.pushpull(VOTE_KEY, ballot, out=ballot)
        counts = [int(round(v)) for v in ballot.asnumpy().tolist()]
        stop = next((name for name, n in zip(_STOP_KINDS, counts[1:]) if n), None)
        return counts[0] == self.num_workers, stop

    def wait_for_all(self):
        """Return once every worker has called this (e.g. the chief finished writing)."""
        self.vote(True)


def setup_workers(cfg, contexts):
    """Create the kvstore / Horovod for `cfg` and describe this process's part."""
    if cfg.horovod:
        return _setup_horovod(contexts)
    if cfg.kvstore.startswith('dist'):  # the launcher's variables: TrainConfig.validate
        kv = mx.kv.create(cfg.kvstore)
        rank, size = worker_info(kv)
        # pushpull sums the workers' gradients; each worker normalises by its own batch.
        return WorkerSetup(kv, rank, size, grad_scale=float(size),
                           no_switch_reason='--kvstore {} keeps each key\'s dtype'.format(
                               cfg.kvstore))
    return WorkerSetup(cfg.kvstore if len(contexts) > 1 else None)


def _setup_horovod(contexts):
    """Horovod: `hvd.init()`, then pick this process's device. What Horovod cannot do
    (--syncbn, several CPU contexts in a process) `TrainConfig.validate` has refused.
    DistributedTrainer averages gradients over the workers itself (grad_scale 1), and a
    new trainer after a precision switch broadcasts and all-reduces like the first, so
    precision may change mid-run."""
    try:
        hvd, rank, size, local_rank = init_horovod()
    except ImportError as err:
        raise ConfigError(str(err)) from None
    return WorkerSetup(None, rank, size, hvd=hvd,
                       contexts=[horovod_device(contexts, local_rank)])


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
