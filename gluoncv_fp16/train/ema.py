"""EMA weights: an FP32 moving average of the master weights, as YOLOv5's ModelEMA.

``ema = d * ema + (1 - d) * w`` after every *applied* optimizer step (never after a step
the loss scaler skipped), with YOLOv5's ramp ``d = decay * (1 - exp(-updates / ramp))``
(``--ema-ramp``, YOLOv5's 2000) so the average follows the weights closely early in
training. A run of fewer updates than about twice the ramp never reaches its decay (1250
updates with a ramp of 2000 end at 0.46 x decay: an average over about two steps), so a
short run or a fine-tuning run sets a smaller ramp. Like YOLOv5, every float
entry of the network is averaged, BatchNorm running statistics included, so the EMA
network validates and exports as it is. `w` is the FP32 value (the master in FP16
phases), so the average never sees FP16 rounding.

The update is one fused ``multi_sgd_update`` call per group of 32 arrays: with weight =
ema, gradient = w, lr = 1 - d, wd = 1 and rescale_grad = -1 it computes
``(1 - (1 - d)) * ema + (1 - d) * w`` on the device, without a host read and without one
operator launch per parameter.

`ModelEMA` is a hook, the feature ``ema`` (on with ``--ema``; placed before evaluation,
which with saving sees its weights): it starts from the weights training starts from,
updates after each applied step, offers its weights for evaluation and deployment
(`HookBase.weights_for_evaluation`: the evaluation hook and the ``.params`` files use
them), and saves and restores its own state (its arrays included).
"""
import math

import mxnet as mx

from .features import feature
from .loop import HookBase

__all__ = ['ModelEMA']

_GROUP = 32  # multi_sgd_update's kernel takes a bounded number of arrays per call


@feature('ema', switch='ema', before=('eval',))
class ModelEMA(HookBase):
    """EMA of a run's FP32 weights, as a hook.

    Parameters
    ----------
    decay : float
        Final decay, in (0, 1).
    ramp : float
        Updates over which the decay ramps up (YOLOv5: 2000).
    """

    def __init__(self, decay=0.9999, ramp=2000.0):
        if not 0.0 < decay < 1.0:
            raise ValueError("EMA decay must be in (0, 1), got {!r}".format(decay))
        if not ramp > 0:
            raise ValueError("EMA ramp must be > 0 updates, got {!r}".format(ramp))
        self.decay = float(decay)
        self.ramp = float(ramp)
        self.updates = 0
        self.weights = {}

    name = 'ema'

    @classmethod
    def from_config(cls, cfg, context):
        return cls(cfg.ema_decay, cfg.ema_ramp)

    def before_train(self, loop):
        self.start(loop.fp32_weights())

    def after_update(self, loop, applied):
        if applied:
            self.update(loop.fp32_weights())

    def weights_for_evaluation(self, loop):
        return self.weights or None

    def current_decay(self):
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp))

    def start(self, fp32_weights):
        """Begin from a copy of the weights (a fresh run's first state)."""
        if not self.weights:
            self.weights = {k: v.astype('float32', copy=True) for k, v in fp32_weights.items()}

    def update(self, fp32_weights):
        """One applied step: move the average towards `fp32_weights` (enqueued only)."""
        self.updates += 1
        step = 1.0 - self.current_decay()
        names = sorted(self.weights)
        for start in range(0, len(names), _GROUP):
            group = names[start:start + _GROUP]
            ema = [self.weights[n] for n in group]
            data = [a for n, e in zip(group, ema) for a in (e, fp32_weights[n])]
            mx.nd.multi_sgd_update(*data, lrs=(step,) * len(group), wds=(1.0,) * len(group),
                                   rescale_grad=-1.0, num_weights=len(group), out=ema)

    def state_dict(self):
        """Plain values, and the weights as ``'w:<structural name>'`` arrays."""
        state = {'updates': self.updates, 'decay': self.decay, 'ramp': self.ramp}
        state.update({'w:' + k: v for k, v in self.weights.items()})
        return state

    def load_state_dict(self, state):
        """The inverse of :meth:`state_dict` (arrays copied to this EMA's device)."""
        weights = {k[2:]: v for k, v in state.items() if k.startswith('w:')}
        self.load(weights, {k: v for k, v in state.items() if not k.startswith('w:')})

    def load(self, weights, state):
        """Restore `weights` (copied to this device) and :meth:`state_dict` output."""
        if not isinstance(state, dict) or 'updates' not in state:
            raise ValueError("not an EMA state: {!r}".format(state))
        ctx = next(iter(self.weights.values())).context if self.weights else None
        self.weights = {k: v.copyto(ctx) if ctx is not None else v.copy()
                        for k, v in weights.items()}
        self.updates = int(state['updates'])

