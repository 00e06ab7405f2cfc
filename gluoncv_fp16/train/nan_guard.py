"""Recovery from divergence: roll back to the last good state, train a while in FP32.

Loss scaling handles the ordinary overflow (skip one step, halve the scale). What it
cannot handle -- a non-finite loss, a scale driven to its floor, a long run of skipped
steps -- means the FP16 run has left the representable range. The guard then restores
an in-memory snapshot of the run state, trains `fallback_iters` steps in FP32, and
returns to FP16. After `max_recoveries` failed recoveries it gives up with
`TrainingDiverged`; the caller saves the last good state.

When snapshots are taken is a function of the run's state, never of when the process
started, so a resumed run holds the same rollback target as an uninterrupted one at
every iteration (docs/training.md, "Snapshots"):

* at the start of training (iteration 0, or the checkpoint a run resumes from);
* whenever the iteration count crosses a multiple of `snapshot_interval`;
* at every epoch end (where checkpoints are written, so every resume point is one);
* when an FP32 fallback ends.

A snapshot is the run state in memory (:func:`.state.capture`): device-side copies of
the weights, optimizer and EMA arrays, no host reads, no pickling.
"""
import logging

from ..errors import TrainingDiverged
from ..precision.policy import FULL_PRECISION

__all__ = ['NanGuard', 'TrainingDiverged']

logger = logging.getLogger(__name__)


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

    def start(self, loop):
        """Snapshot the state training starts (or resumes) from, unless the checkpoint
        carried the snapshot the interrupted run held (it stopped between snapshots)."""
        if self.snapshot is None:
            self.snapshot = loop.capture()

    def at_checkpoint(self, loop):
        """A checkpoint point (epoch end): snapshot, so every resume point is one."""
        self.snapshot = loop.capture()

    def after_good_step(self, loop, batches=1):
        """Count down the FP32 fallback; snapshot at multiples of `snapshot_interval`.

        `batches` is how many iterations the step consumed (gradient accumulation)."""
        if self.fallback_left > 0:
            self.fallback_left -= 1
            if self.fallback_left == 0:
                logger.info('FP32 fallback over at iteration %d; back to %s',
                            loop.iteration, loop.scheduled_phase())
                loop.set_phase(loop.scheduled_phase())
                self.snapshot = loop.capture()
            return
        interval = self.snapshot_interval
        if loop.iteration // interval > (loop.iteration - batches) // interval:
            self.snapshot = loop.capture()

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
            # An FP32 warm-up is a cure only for a run that has an FP16 phase; an FP32 run's
            # gradients are not scaled, so clipping is what bounds them.
            cure = ('use --fp32-warmup-epochs' if loop.policy.allows_fp32_warmup else
                    'clip gradients with --clip-grad MAXNORM')
            raise TrainingDiverged(
                "training diverged at epoch {} iteration {} ({}) after {} recoveries. Lower "
                "--lr, raise --warmup-epochs, or {}.".format(
                    loop.epoch, loop.iteration, reason, self.recoveries, cure))
        self.recoveries += 1
        loop.restore(self.snapshot, rollback=True)
        if loop.no_switch_reason:
            logger.warning('rolled back to iteration %d; staying in %s (%s) (recovery %d '
                           'of %d)', self.snapshot.iteration, loop.phase,
                           loop.no_switch_reason, self.recoveries, self.max_recoveries)
            return
        loop.set_phase(FULL_PRECISION)
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
