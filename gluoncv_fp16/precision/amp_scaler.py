"""MXNet AMP's own dynamic loss scaling behind the same calls as `LossScaler`.

With ``--amp`` the loss is scaled by `amp.scale_loss` and overflowing steps are skipped
inside the AMP-patched `Trainer.update`; this adapter drives those calls and keeps the
counts (skips, scale) that the loop logs, so the loop has one code path for all modes.
AMP's scale lives on the trainer with no public getter or setter
(:func:`gluoncv_fp16.mxnet_compat.amp_scaler_fields`); it is saved and restored here so
that a resumed ``--amp`` run continues with the scale it had, not AMP's initial 2^16.
"""
import logging

from mxnet import autograd

from .loss_scaler import LossScaler
from ..mxnet_compat import amp_loss_scale, amp_scaler_fields, set_amp_scaler_fields

__all__ = ['AmpLossScaler']

logger = logging.getLogger(__name__)


class AmpLossScaler(LossScaler):
    """Loss scaling by MXNet AMP (requires `amp.init()` before the network was built)."""

    MODE = 'amp'  # the scaler's `mode` in its state dict, as checkpoints store it

    def __init__(self):
        super().__init__('none')
        self.mode = self.MODE
        self._trainer = None
        self._pending = None  # AMP scaler fields loaded before a trainer was attached

    @property
    def enabled(self):
        return True

    @property
    def collapsed(self):
        return False

    @property
    def unscale_divisor(self):
        """1: AMP divides its scale out through the trainer's own multiplier."""
        return 1.0

    def attach(self, trainer):
        """Register a new gluon.Trainer with AMP (call for every trainer built)."""
        from mxnet.contrib import amp
        amp.init_trainer(trainer)
        self._trainer = trainer
        if self._pending:
            self._set_amp_fields(self._pending)

    @property
    def scale_value(self):
        scale = amp_loss_scale(self._trainer)
        return 1.0 if scale is None else scale

    @scale_value.setter
    def scale_value(self, value):
        pass  # AMP owns the scale; the base constructor's assignment is ignored

    def backward(self, losses, trainer=None):
        from mxnet.contrib import amp
        with autograd.record(), amp.scale_loss(list(losses), trainer or self._trainer) as scaled:
            scaled = list(scaled)
        autograd.backward(scaled)

    def step(self, trainer, batch_size, finite=True, grad_factor=1.0):
        """AMP skips overflowing updates itself (with its own read of the flag)."""
        trainer.update(batch_size / grad_factor)
        return bool(finite)

    def update(self, applied, params=None, iteration=None):
        """Count the step; `iteration` as in `LossScaler.update`."""
        self.iteration = self.iteration + 1 if iteration is None else int(iteration)
        if applied:
            self.consecutive_skips = 0
        else:
            self.total_skips += 1
            self.consecutive_skips += 1
            logger.info('AMP skipped iteration %d (overflow); loss scale now %g',
                        self.iteration, self.scale_value)

    def _amp_fields(self):
        return amp_scaler_fields(self._trainer)

    def _set_amp_fields(self, fields):
        self._pending = None if set_amp_scaler_fields(self._trainer, fields) else dict(fields)

    def state_dict(self):
        return dict(mode=self.MODE, total_skips=self.total_skips, iteration=self.iteration,
                    consecutive_skips=self.consecutive_skips,
                    amp=self._amp_fields() or self._pending)

    def load_state_dict(self, state):
        if not isinstance(state, dict) or state.get('mode') != self.MODE:
            raise ValueError("not an AMP loss scaler state: {!r}".format(state))
        self.total_skips = int(state['total_skips'])
        self.iteration = int(state['iteration'])
        self.consecutive_skips = int(state.get('consecutive_skips', 0))
        if state.get('amp'):
            self._set_amp_fields(state['amp'])
