"""Precision policies (fp32 | fp16 | amp) and the switch between FP32 and FP16 mid-run.

A policy is a small immutable object made from a name; every dtype decision of the
training loop is one of its methods, so the loop has no ``if fp16`` branches:

* ``fp32``: as GluonCV.
* ``fp16``: the network is cast to float16 (BatchNorm and layers that declare
  themselves FP32 keep FP32 parameters), the batch image is cast to float16, and SGD
  keeps FP32 master weights (``multi_precision=True``). Loss scaling is needed.
* ``amp``: MXNet AMP rewrites operators process-wide to float16 where safe. It must
  be switched on before any network is built and can never be switched off again.
"""
import logging
import pickle

import numpy as np

from ..utils.trainer_io import load_trainer_state_bytes, trainer_state_bytes

__all__ = ['PrecisionPolicy', 'get_policy', 'POLICY_NAMES', 'activate_amp', 'amp_active',
           'switch_precision', 'start_half_precision']

logger = logging.getLogger(__name__)

POLICY_NAMES = ('fp32', 'fp16', 'amp')
_AMP_STATE = {'active': False}  # the one piece of process-wide state: AMP cannot be undone


class PrecisionPolicy:
    """How one precision mode trains. Make it with :func:`get_policy`.

    Attributes
    ----------
    name : str
        'fp32', 'fp16' or 'amp'.
    compute_dtype : str
        dtype of the network's weights and activations ('float32' for amp: AMP casts
        per operator at run time).
    master_dtype : str
        dtype of the weights the optimizer updates (always 'float32').
    needs_loss_scaling : bool
        Whether gradients must be protected against FP16 underflow.
    """

    __slots__ = ('name', 'compute_dtype', 'master_dtype', 'needs_loss_scaling', 'uses_amp')

    def __init__(self, name, compute_dtype, needs_loss_scaling, uses_amp=False):
        for attr, value in (('name', name), ('compute_dtype', compute_dtype),
                            ('master_dtype', 'float32'),
                            ('needs_loss_scaling', needs_loss_scaling), ('uses_amp', uses_amp)):
            object.__setattr__(self, attr, value)

    def __setattr__(self, key, value):
        raise AttributeError("PrecisionPolicy is immutable; make another with get_policy()")

    def __repr__(self):
        return "PrecisionPolicy({!r})".format(self.name)

    def prepare_net(self, net):
        """Cast the (initialised) training network to the compute dtype; returns it."""
        if self.compute_dtype != 'float32':
            net.cast(self.compute_dtype)
        return net

    def optimizer_params(self, params):
        """`params` for `gluon.Trainer`, with FP32 master weights when computing in FP16."""
        params = dict(params)
        if self.compute_dtype == 'float16':
            params['multi_precision'] = True
        return params

    def cast_input(self, array):
        """The batch image in the compute dtype (targets stay FP32)."""
        return array if array.dtype == np.dtype(self.compute_dtype) \
            else array.astype(self.compute_dtype)


_POLICIES = {
    'fp32': PrecisionPolicy('fp32', 'float32', needs_loss_scaling=False),
    'fp16': PrecisionPolicy('fp16', 'float16', needs_loss_scaling=True),
    'amp': PrecisionPolicy('amp', 'float32', needs_loss_scaling=True, uses_amp=True),
}


def get_policy(name):
    """The policy for 'fp32', 'fp16' or 'amp'."""
    try:
        return _POLICIES[str(name).lower()]
    except KeyError:
        raise ValueError("unknown precision {!r}; choose one of {} (CLI: --fp16, --amp, or "
                         "neither for fp32)".format(name, list(POLICY_NAMES))) from None


def amp_active():
    """Whether MXNet AMP has been switched on in this process."""
    return _AMP_STATE['active']


def activate_amp(policy, **amp_init_kwargs):
    """Switch MXNet AMP on for an 'amp' policy; refuse mixing AMP with other modes.

    Call it before building any network (AMP patches operator functions at import of
    the network code's calls) and after building the data transforms: GluonCV's
    transforms run an FP32 forward that AMP would break on CPU (GluonCV issue 1277).
    `amp_init_kwargs` go to `mxnet.contrib.amp.init` (e.g. a restricted op list).
    """
    if not policy.uses_amp:
        if amp_active():
            raise RuntimeError("MXNet AMP is already active in this process and cannot be "
                               "turned off; run the {} job in a new process".format(policy.name))
        return
    if amp_active():
        return
    from mxnet.contrib import amp
    amp.init(**amp_init_kwargs)
    _AMP_STATE['active'] = True
    logger.info('MXNet AMP initialised (process-wide, cannot be undone)')


def _trainer_states(trainer):
    """(per-parameter-index states, optimizer) through the Trainer's public save API."""
    loaded = pickle.loads(trainer_state_bytes(trainer))
    if isinstance(loaded, tuple) and len(loaded) == 2:
        return loaded
    raise RuntimeError("unexpected gluon.Trainer state format; cannot switch precision "
                       "while keeping optimizer state")


def _load_trainer_states(trainer, states, optimizer):
    load_trainer_state_bytes(trainer, pickle.dumps((states, optimizer)))


def trainer_param_order(net):
    """The parameters in the order gluon.Trainer indexes them (sorted by name)."""
    pdict = net.collect_params()
    return [pdict[name] for name in sorted(pdict.keys())]


def _state_arrays(state):
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in _state_arrays(s)]
    return [] if state is None else [state]


def _check_state_shapes(params, states):
    for index, state in states.items():
        for array in _state_arrays(state):
            if index >= len(params) or tuple(array.shape) != tuple(params[index].shape):
                raise RuntimeError(
                    "optimizer state {} does not match parameter order (shape {}); cannot "
                    "switch precision safely".format(index, getattr(array, 'shape', None)))


def _master_slot(optimizer):
    """Where `optimizer` keeps the FP32 master copy in a multi-precision state tuple.

    SGD stores (momentum, master), the base Optimizer (master, state); probing with a
    weight of ones finds it without depending on either layout (fresh optimizer state
    such as momentum starts at zero).
    """
    import mxnet as mx
    was = optimizer.multi_precision
    optimizer.multi_precision = True
    try:
        state = optimizer.create_state_multi_precision(0, mx.nd.ones((1,), dtype='float16'))
    finally:
        optimizer.multi_precision = was
    for slot, item in enumerate(state if isinstance(state, (tuple, list)) else ()):
        if isinstance(item, mx.nd.NDArray) and item.dtype == np.float32 and \
                float(item.asscalar()) == 1.0:
            return slot
    raise RuntimeError("cannot find the FP32 master copy in {}'s multi-precision state; "
                       "switching precision needs an optimizer with multi_precision support"
                       .format(type(optimizer).__name__))


def _pack(slot, master, inner):
    return (master, inner) if slot == 0 else (inner, master)


def _half_states(params, trained, masters, states, optimizer, slot):
    """Optimizer states for the FP16-cast net: each FP16 weight's master is `masters[i]`
    (FP32, exact); its inner state is the old one or a fresh one."""
    new_states = {}
    for i in trained:
        if np.dtype(params[i].dtype) == np.float16:
            inner = states[i] if i in states else optimizer.create_state(i, masters[i])
            new_states[i] = _pack(slot, masters[i], inner)
        elif i in states:
            new_states[i] = states[i]
    return new_states


def start_half_precision(net, make_trainer):
    """Cast a fresh FP32 `net` to FP16 and return its first trainer, whose FP32 master
    weights are the FP32 weights themselves.

    MXNet's multi-precision optimizers create each master lazily from the FP16 weight, so
    after a plain ``cast('float16')`` the masters hold the FP16 *rounding* of, say,
    pretrained FP32 weights: every weight starts up to 2**-11 of itself away from where
    it was, and that error never leaves the masters. Seeding the masters before the
    first step keeps them exact (momentum and counters start fresh).
    """
    params = trainer_param_order(net)
    trained = [i for i, p in enumerate(params) if p.grad_req != 'null']
    masters = {i: params[i].data().astype('float32', copy=True) for i in trained}
    net.cast('float16')
    trainer = make_trainer(net, True)
    states, optimizer = _trainer_states(trainer)
    _load_trainer_states(trainer, _half_states(params, trained, masters, states, optimizer,
                                               _master_slot(optimizer)), optimizer)
    return trainer


def switch_precision(net, trainer, make_trainer, dtype):
    """Cast `net` to `dtype` mid-training and return a new Trainer that continues exactly.

    The FP32 weights become (or come back from) the FP32 master copies, and the
    optimizer's per-parameter state (momentum) and update counters carry over, so the
    LR schedule continues where it was.

    Parameters
    ----------
    net : gluon.Block
        The training network, currently in the other dtype.
    trainer : gluon.Trainer
        Its current trainer (discarded afterwards).
    make_trainer : callable(net, multi_precision) -> gluon.Trainer
        Builds a trainer for the cast network (a Trainer must be built after a cast).
    dtype : {'float16', 'float32'}
    """
    params = trainer_param_order(net)
    states, optimizer = _trainer_states(trainer)
    _check_state_shapes(params, states)
    to_half = np.dtype(dtype) == np.float16
    slot = _master_slot(optimizer)
    trained = [i for i, p in enumerate(params) if p.grad_req != 'null']
    if to_half:
        masters = {i: params[i].data().copy() for i in trained}
        net.cast('float16')
        new_states = _half_states(params, trained, masters, states, optimizer, slot)
    else:
        new_states, masters = {}, {}
        for i in trained:
            state = states.get(i)
            if np.dtype(params[i].dtype) == np.float16 and isinstance(state, (tuple, list)):
                masters[i], new_states[i] = state[slot], state[1 - slot]
            elif i in states:
                new_states[i] = state
        net.cast('float32')
        for i, master in masters.items():
            params[i].set_data(master)
    optimizer.multi_precision = to_half
    new_trainer = make_trainer(net, to_half)
    _load_trainer_states(new_trainer, new_states, optimizer)
    logger.info('precision switched to %s (master weights and optimizer state kept)', dtype)
    return new_trainer
