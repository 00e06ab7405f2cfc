"""Early stopping (``--patience N``): end training when validation mAP has not improved for
N epochs, as YOLOv5's EarlyStopping.

The feature ``patience`` (on with ``--patience N``, N > 0): a hook on the chief, where mAP
is measured, placed after the evaluation hook. At each epoch's end it reads the mAP the
evaluation put into the record, and when the best is N or more epochs old it asks the
loop to stop (`TrainLoop.request_stop`). The workers' vote ends every worker's training
after that same epoch. The best checkpoint is the checkpoint hook's ``_best.ckpt`` /
``_best.params``. Its best mAP and epoch are part of the run state, so a resumed run
counts on from where the interrupted one was.
"""
import logging
import math

from .features import feature
from .loop import HookBase

__all__ = ['PatienceHook']

logger = logging.getLogger(__name__)


@feature('patience', switch='patience', after=('eval',), chief_only=True)
class PatienceHook(HookBase):
    """Stop when ``map`` has not improved for `patience` epochs.

    Parameters
    ----------
    patience : int
        Epochs without a better mAP before stopping (>= 1). Epochs without validation
        (``--val-interval``) count as epochs without improvement.
    """
    name = 'patience'

    def __init__(self, patience):
        if int(patience) < 1:
            raise ValueError("patience must be >= 1 epochs, got {!r}".format(patience))
        self.patience = int(patience)
        self.best_map = -math.inf
        self.best_epoch = -1

    @classmethod
    def from_config(cls, cfg, context):
        return cls(cfg.patience)

    def end_of_epoch(self, loop):
        current = loop.record.scalar('map', math.nan)
        if math.isnan(current):
            return
        if current > self.best_map:
            self.best_map, self.best_epoch = current, loop.epoch
        stale = loop.epoch - self.best_epoch
        loop.record.put_scalar('epochs_without_improvement', stale)
        if stale >= self.patience:
            reason = 'early stop: validation mAP has not improved for {} epochs (best {:.4f} ' \
                     'at epoch {}; --patience {})'.format(stale, self.best_map,
                                                         self.best_epoch, self.patience)
            loop.record.put_scalar('stop_reason', reason)
            loop.request_stop(reason)

    def state_dict(self):
        return {'best_map': self.best_map if math.isfinite(self.best_map) else None,
                'best_epoch': self.best_epoch}

    def load_state_dict(self, state):
        best = state.get('best_map')
        self.best_map = -math.inf if best is None else float(best)
        self.best_epoch = int(state.get('best_epoch', -1))
