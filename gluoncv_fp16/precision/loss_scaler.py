"""Loss scaling for FP16 training: scale the loss, step or skip, update the scale.

FP16 gradients underflow to zero below ~6e-8; multiplying the loss by S moves them into
range, and the optimizer divides by S again (through `rescale_grad`, so no extra pass
over the gradients). A dynamic scaler halves S whenever a gradient overflows -- that
step is skipped, leaving weights and optimizer state untouched -- and doubles it after
`growth_interval` clean steps.

Three calls a step, one code path for every precision::

    with autograd.record():
        losses = ...
    scaler.backward(losses)                 # loss * S, backward
    trainer.allreduce_grads()
    finite = finite_flag(params)            # on the device: no host read
    ...                                     # the caller reads it (with its other numbers)
    applied = scaler.step(trainer, batch_size, finite)   # update, or skip on inf/NaN
    scaler.update(applied, params)

`LossScaler(mode='none')` (``enabled`` False) keeps the calls and never scales or skips:
it is the FP32 phase of every run.
"""
import logging
import math

import mxnet as mx
import numpy as np
from mxnet import autograd

__all__ = ['LossScaler', 'make_loss_scaler', 'finite_flag', 'first_non_finite']

logger = logging.getLogger(__name__)

_CHUNK = 128  # multi_all_finite takes a bounded number of arrays per call


def finite_flag(params):
    """A (1,) float32 NDArray on the first gradient's device: 1 if every gradient (first
    context) of `params` is finite, else 0. Enqueued only: reading it is the caller's one
    blocking read of the step."""
    by_dtype = {}
    for param in params:
        if param.grad_req != 'null':
            grad = param.list_grad()[0]
            by_dtype.setdefault(np.dtype(grad.dtype).name, []).append(grad)
    with autograd.pause():
        return _all_of([_all_finite(grads) for grads in by_dtype.values()])


def _all_finite(grads):
    """(1,) flag of arrays of one dtype on one device.

    On a GPU, ``multi_all_finite`` checks up to 128 arrays in one kernel. MXNet's CPU
    kernel of it is several times slower than one ``all_finite`` per array (84.5 vs 13.6
    ms over 3M floats, and ~40% of a 64-px mobilenet0.25 training step here), so CPUs
    take that route instead.
    """
    if grads[0].context.device_type != 'gpu':
        return _all_of([mx.nd.all_finite(g) for g in grads])
    flag = mx.nd.ones((1,), ctx=grads[0].context)
    for start in range(0, len(grads), _CHUNK):  # the op takes one input dtype per call
        chunk = grads[start:start + _CHUNK]
        mx.nd.multi_all_finite(*chunk, num_arrays=len(chunk), init_output=False, out=flag)
    return flag


def _all_of(flags):
    """One (1,) flag from (1,) flags on one device: their minimum."""
    return flags[0] if len(flags) == 1 else mx.nd.min(mx.nd.concat(*flags, dim=0),
                                                        keepdims=True)


def first_non_finite(params):
    """Name of the first parameter whose gradient holds inf/NaN (slow; error path only)."""
    for param in params:
        if param.grad_req != 'null':
            grad = param.list_grad()[0].astype('float32')
            if not bool(mx.nd.contrib.isfinite(grad).min().asscalar()):
                return param.name
    return None


class LossScaler:
    """Dynamic, static or disabled loss scaling.

    Parameters
    ----------
    mode : {'dynamic', 'static', 'none'}
        'none' never scales and never skips (FP32, or the plain FP16 recipe).
    init_scale : float
        Starting (dynamic) or fixed (static) scale; must be > 0.
    growth_factor, backoff_factor : float
        Multiply the scale by these after `growth_interval` clean steps / on overflow.
    growth_interval : int
        Clean steps before the scale grows.
    min_scale, max_scale : float
        Bounds of the dynamic scale. Reaching `min_scale` counts as a collapse. The
        floor is below 1 on purpose: YOLOv3's loss is a sum over all anchors, and at
        initialisation its FP16 weight gradients reach ~2e4 at scale 1 (mobilenet0.25,
        64 px, batch 2), so the safe scale can be a few units or less.
    max_consecutive_skips : int
        Raise `FloatingPointError` after this many skipped steps in a row.
    """

    MODES = ('dynamic', 'static', 'none')

    def __init__(self, mode='dynamic', init_scale=2.0 ** 15, growth_factor=2.0,
                 backoff_factor=0.5, growth_interval=1000, min_scale=2.0 ** -14,
                 max_scale=2.0 ** 24, max_consecutive_skips=50):
        if mode not in self.MODES:
            raise ValueError("loss scale mode {!r} is not one of {}".format(mode, self.MODES))
        _require(init_scale > 0 and math.isfinite(init_scale), 'init_scale > 0', init_scale)
        _require(growth_factor > 1, 'growth_factor > 1', growth_factor)
        _require(0 < backoff_factor < 1, '0 < backoff_factor < 1', backoff_factor)
        _require(int(growth_interval) >= 1, 'growth_interval >= 1', growth_interval)
        _require(0 < min_scale <= max_scale, '0 < min_scale <= max_scale', (min_scale, max_scale))
        _require(int(max_consecutive_skips) >= 1, 'max_consecutive_skips >= 1',
                 max_consecutive_skips)
        self.mode = mode
        self._config = dict(init_scale=float(init_scale), growth_factor=float(growth_factor),
                            backoff_factor=float(backoff_factor),
                            growth_interval=int(growth_interval), min_scale=float(min_scale),
                            max_scale=float(max_scale),
                            max_consecutive_skips=int(max_consecutive_skips))
        self.scale_value = 1.0 if mode == 'none' else float(init_scale)
        self.clean_steps = 0
        self.consecutive_skips = 0
        self.total_skips = 0
        self.iteration = 0

    @property
    def enabled(self):
        return self.mode != 'none'

    @property
    def unscale_divisor(self):
        """What the gradients must still be divided by to be the loss's own, beyond the
        multiplier `gluon.Trainer` applies itself (1 when not scaling)."""
        return self.scale_value if self.enabled else 1.0

    def scale(self, losses):
        """The losses multiplied by the current scale (a list in, a list out)."""
        if not self.enabled:
            return list(losses)
        return [loss * self.scale_value for loss in losses]

    def backward(self, losses, trainer=None):
        """Backward of the scaled losses (the scaling itself is recorded, so it can be
        called after the forward's `autograd.record()` block is closed)."""
        with autograd.record():
            scaled = self.scale(losses)
        autograd.backward(scaled)

    def attach(self, trainer):
        """Called with every new gluon.Trainer (nothing to do for this scaler)."""

    def step(self, trainer, batch_size, finite=True, grad_factor=1.0):
        """Update the weights unless a gradient was inf/NaN; returns True if updated.

        `finite` is the host value of :func:`finite_flag`, taken after the gradients were
        all-reduced (`trainer.allreduce_grads()`), so every device and every worker takes
        the same decision. `grad_factor` multiplies the unscaled gradients (clipping).
        """
        if self.enabled and not finite:
            return False
        trainer.update(batch_size * self.scale_value / grad_factor)
        return True

    def update(self, applied, params=None, iteration=None):
        """Adjust the scale after a step; raise if too many steps were skipped in a row.

        `iteration` is the run's iteration after this step, the number its logs and
        metrics files give the step (a run counts FP32 steps too, this scaler does not);
        None counts the scaler's own updates."""
        self.iteration = self.iteration + 1 if iteration is None else int(iteration)
        if applied:
            self.consecutive_skips = 0
            self.clean_steps += 1
            if self.mode == 'dynamic' and self.clean_steps >= self._config['growth_interval']:
                self.scale_value = min(self.scale_value * self._config['growth_factor'],
                                       self._config['max_scale'])
                self.clean_steps = 0
                logger.debug('loss scale grows to %g', self.scale_value)
            return
        self.total_skips += 1
        self.consecutive_skips += 1
        self.clean_steps = 0
        if self.mode == 'dynamic':
            self.scale_value = max(self.scale_value * self._config['backoff_factor'],
                                   self._config['min_scale'])
        logger.info('non-finite gradient at iteration %d: step skipped, loss scale now %g',
                    self.iteration, self.scale_value)
        if self.consecutive_skips >= self._config['max_consecutive_skips']:
            bad = first_non_finite(params) if params is not None else None
            raise FloatingPointError(
                "{} consecutive steps had inf/NaN gradients (iteration {}, loss scale {:g}, "
                "first bad parameter: {}). Lower the learning rate, or use --loss-scale "
                "dynamic / a smaller static scale.".format(
                    self.consecutive_skips, self.iteration, self.scale_value, bad or 'unknown'))

    @property
    def collapsed(self):
        """True once a dynamic scale has been driven down to `min_scale`."""
        return self.mode == 'dynamic' and self.scale_value <= self._config['min_scale']

    def state_dict(self):
        """Runtime state as plain numbers."""
        return dict(mode=self.mode, scale=self.scale_value, clean_steps=self.clean_steps,
                    consecutive_skips=self.consecutive_skips, total_skips=self.total_skips,
                    iteration=self.iteration)

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` output; rejects empty or foreign dicts."""
        keys = {'mode', 'scale', 'clean_steps', 'consecutive_skips', 'total_skips', 'iteration'}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError("not a LossScaler state_dict: expected keys {}, got {}".format(
                sorted(keys), sorted(state) if isinstance(state, dict) else type(state)))
        if state['mode'] != self.mode:
            raise ValueError("state_dict is for a {!r} loss scaler, this one is {!r}".format(
                state['mode'], self.mode))
        self.scale_value = float(state['scale'])
        self.clean_steps = int(state['clean_steps'])
        self.consecutive_skips = int(state['consecutive_skips'])
        self.total_skips = int(state['total_skips'])
        self.iteration = int(state['iteration'])


def _require(ok, rule, value):
    if not ok:
        raise ValueError("invalid loss scaler setting: need {}, got {!r}".format(rule, value))


def make_loss_scaler(spec, **kwargs):
    """From a CLI value: 'dynamic', 'none', or a number (static scale)."""
    text = str(spec).strip().lower()
    if text in ('dynamic', 'none'):
        return LossScaler(text, **kwargs)
    try:
        value = float(text)
    except ValueError:
        raise ValueError("--loss-scale must be 'dynamic', 'none' or a positive number, got "
                         "{!r}".format(spec)) from None
    return LossScaler('static', init_scale=value, **kwargs)
