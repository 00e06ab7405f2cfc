"""MXNet AMP's own dynamic loss scaling behind the same three calls as `LossScaler`.

With ``--amp`` the loss is scaled by `amp.scale_loss` and overflowing steps are skipped
inside the AMP-patched `Trainer.update`; this adapter drives those calls and keeps the
counts (skips, scale) that the loop logs, so the loop has one code path for all modes.
"""
import logging

from mxnet import autograd

from .loss_scaler import gradients_finite

__all__ = ['AmpLossScaler']

logger = logging.getLogger(__name__)


class AmpLossScaler:
    """Loss scaling by MXNet AMP (requires `amp.init()` before the network was built)."""

    mode = 'amp'
    enabled = True
    collapsed = False

    def __init__(self):
        self._trainer = None
        self.total_skips = 0
        self.consecutive_skips = 0
        self.iteration = 0

    def attach(self, trainer):
        """Register a new gluon.Trainer with AMP (call for every trainer built)."""
        from mxnet.contrib import amp
        amp.init_trainer(trainer)
        self._trainer = trainer

    @property
    def scale_value(self):
        # AMP keeps its scaler on the trainer; there is no public getter.
        scaler = getattr(self._trainer, '_amp_loss_scaler', None)
        return float(scaler.loss_scale) if scaler is not None else 1.0

    def backward(self, losses, trainer=None):
        from mxnet.contrib import amp
        with autograd.record():
            with amp.scale_loss(list(losses), trainer or self._trainer) as scaled:
                scaled = list(scaled)
        autograd.backward(scaled)

    def step(self, trainer, batch_size, params):
        """AMP skips overflowing updates itself; we look first, only to count them."""
        finite = gradients_finite(params)
        trainer.update(batch_size)
        return finite

    def update(self, applied, params=None):
        self.iteration += 1
        if applied:
            self.consecutive_skips = 0
        else:
            self.total_skips += 1
            self.consecutive_skips += 1
            logger.info('AMP skipped iteration %d (overflow); loss scale now %g',
                        self.iteration, self.scale_value)

    def get_config(self):
        return {'mode': 'amp'}

    def state_dict(self):
        return dict(mode='amp', total_skips=self.total_skips, iteration=self.iteration)

    def load_state_dict(self, state):
        if not isinstance(state, dict) or state.get('mode') != 'amp':
            raise ValueError("not an AMP loss scaler state: {!r}".format(state))
        self.total_skips = int(state['total_skips'])
        self.iteration = int(state['iteration'])
