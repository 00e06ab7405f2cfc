"""Recovery from divergence: roll back to the last good state, train a while in FP32.

Loss scaling handles the ordinary overflow (skip one step, halve the scale). What it
cannot handle -- a non-finite loss, a scale driven to its floor, a long run of skipped
steps -- means the FP16 run has left the representable range. The guard then restores
an in-memory snapshot taken a few iterations earlier, trains `fallback_iters` iterations
in FP32, and returns to FP16. After `max_recoveries` failed recoveries it gives up with
`TrainingDiverged`; the caller saves a checkpoint of the last good state.
"""
import logging

from ..utils.trainer_io import trainer_state_bytes

__all__ = ['NanGuard', 'TrainingDiverged', 'Snapshot']

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Training produced inf/NaN again and again; recovery was abandoned."""


class Snapshot:
    """An in-memory copy of everything a rollback restores."""

    def __init__(self, loop):
        self.iteration = loop.iteration
        self.phase = loop.phase
        self.params = {name: p.data(p.list_ctx()[0]).copy()
                       for name, p in loop.net.collect_params().items()}
        self.scaler_state = loop.scaler.state_dict()
        self.trainer_states = trainer_state_bytes(loop.trainer)


class NanGuard:
    """Decides when to snapshot, when to roll back, and when to give up.

    Parameters
    ----------
    fallback_iters : int
        Iterations trained in FP32 after a rollback before returning to FP16.
    max_recoveries : int
        Rollbacks allowed in one run before `TrainingDiverged`.
    snapshot_interval : int
        Iterations between snapshots of the good state.
    no_rollback_reason : str or None
        Why rolling back is impossible in this run (e.g. workers that cannot agree on
        it); the first unhealthy step then ends training with `TrainingDiverged`.
    """

    def __init__(self, fallback_iters=100, max_recoveries=3, snapshot_interval=50,
                 no_rollback_reason=None):
        for name, value, low in (('fallback_iters', fallback_iters, 1),
                                 ('max_recoveries', max_recoveries, 0),
                                 ('snapshot_interval', snapshot_interval, 1)):
            if int(value) < low:
                raise ValueError("NanGuard {} must be >= {}, got {}".format(name, low, value))
        self.fallback_iters = int(fallback_iters)
        self.max_recoveries = int(max_recoveries)
        self.snapshot_interval = int(snapshot_interval)
        self.no_rollback_reason = no_rollback_reason
        self.snapshot = None
        self.recoveries = 0
        self.fallback_left = 0
        self.events = []

    @property
    def in_fallback(self):
        return self.fallback_left > 0

    def after_good_step(self, loop):
        """Count down the FP32 fallback; snapshot periodically while healthy."""
        if self.fallback_left > 0:
            self.fallback_left -= 1
            if self.fallback_left == 0:
                logger.info('FP32 fallback over at iteration %d; back to %s',
                            loop.iteration, loop.scheduled_phase())
                loop.set_phase(loop.scheduled_phase())
                self.snapshot = Snapshot(loop)
            return
        if self.snapshot is None or \
                loop.iteration - self.snapshot.iteration >= self.snapshot_interval:
            self.snapshot = Snapshot(loop)

    def recover(self, loop, reason):
        """Roll `loop` back to the snapshot and start an FP32 fallback, or give up."""
        self.events.append({'iteration': loop.iteration, 'reason': reason})
        logger.warning('iteration %d: %s', loop.iteration, reason)
        if self.no_rollback_reason:
            raise TrainingDiverged(
                "epoch {} iteration {}: {}; no rollback: {}. Resume from the last "
                "checkpoint (--resume auto), with a lower --lr or --loss-scale.".format(
                    loop.epoch, loop.iteration, reason, self.no_rollback_reason))
        if self.snapshot is None or self.recoveries >= self.max_recoveries:
            raise TrainingDiverged(
                "training diverged at epoch {} iteration {} ({}) after {} recoveries. Lower "
                "--lr, raise --warmup-epochs, or use --fp32-warmup-epochs.".format(
                    loop.epoch, loop.iteration, reason, self.recoveries))
        self.recoveries += 1
        loop.restore(self.snapshot)
        if loop.no_switch_reason:
            logger.warning('rolled back to iteration %d; staying in %s (%s) (recovery %d '
                           'of %d)', self.snapshot.iteration, loop.phase,
                           loop.no_switch_reason, self.recoveries, self.max_recoveries)
            return
        loop.set_phase('fp32')
        self.fallback_left = self.fallback_iters
        logger.warning('rolled back to iteration %d; training %d iterations in FP32 '
                       '(recovery %d of %d)', self.snapshot.iteration, self.fallback_iters,
                       self.recoveries, self.max_recoveries)

    def state_dict(self):
        return {'recoveries': self.recoveries, 'fallback_left': self.fallback_left,
                'events': list(self.events)}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or not {'recoveries', 'fallback_left'} <= set(state):
            raise ValueError("not a NanGuard state_dict: {!r}".format(state))
        self.recoveries = int(state['recoveries'])
        self.fallback_left = int(state['fallback_left'])
        self.events = list(state.get('events', []))
