"""A gluon.Trainer's optimizer state as named arrays, without pickle.

`gluon.Trainer.save_states` / `load_states` are the only public route to the optimizer
state, and both pickle (the states *and* the optimizer object). Pickle is not an option
for files users share (unpickling runs code), and it forces every array to the host. So
this module reads and writes the per-parameter states of the Trainer's updaters directly
(private attributes of MXNet 1.9's Gluon, the only place the state lives, reached through
:mod:`gluoncv_fp16.mxnet_compat`).

Two decisions make the state small and dtype-independent:

* States are keyed by the parameter's *structural* name (``features.0.weight``), not the
  Trainer's index, so they survive a rebuilt Trainer or a precision switch.
* A multi-precision state ``(inner, FP32 master)`` is stored as its inner part only; the
  master *is* the parameter's FP32 value, which the caller keeps anyway. Installing a state
  for an FP16 parameter seeds its master from that FP32 value, exactly. This is also how a
  fresh FP16 run starts (masters = the FP32 weights, not their FP16 rounding) and how a run
  switches between FP32 and FP16 mid-training.
"""
import mxnet as mx
import numpy as np

from ..mxnet_compat import set_update_counts, trainer_updaters, update_counts
from ..mxnet_compat import trainer_params as _trainer_order

__all__ = ['OptimizerState', 'capture_optimizer', 'install_optimizer', 'master_arrays',
           'trainer_params', 'flatten_state']


class OptimizerState:
    """Per-parameter inner states and update counters of one optimizer.

    Attributes
    ----------
    arrays : dict of str -> NDArray
        ``'<param>/<k>'``: the k-th array of the parameter's inner state (momentum...).
    layout : dict of str -> spec
        Per parameter: None (no state), 'a' (one array) or a list of specs (a tuple).
    counters : dict
        ``num_update``, ``begin_num_update`` and ``index_counts`` ({device id: {param:
        count}}): the optimizer's update counts, which drive the LR schedule.
    """

    def __init__(self, arrays, layout, counters):
        self.arrays = arrays
        self.layout = layout
        self.counters = counters

    def meta(self):
        return {'layout': self.layout, 'counters': self.counters}


def trainer_params(trainer, names):
    """[(index, structural name, Parameter)] for the Trainer's trained parameters.

    `names` maps ``id(Parameter)`` to its structural name.
    """
    return [(i, names[id(p)], p) for i, p in enumerate(_trainer_order(trainer))
            if p.grad_req != 'null']


def master_slot(optimizer):
    """Where `optimizer` keeps the FP32 master in a multi-precision state tuple.

    SGD stores (momentum, master), the base Optimizer (master, state); probing with a
    weight of ones finds it without depending on either layout (fresh inner state such as
    momentum starts at zero). The probe reads a value back, so it runs once per optimizer
    class (the layout is the class's).
    """
    kind = type(optimizer)
    if kind not in _MASTER_SLOTS:
        _MASTER_SLOTS[kind] = _probe_master_slot(optimizer)
    return _MASTER_SLOTS[kind]


_MASTER_SLOTS = {}


def _probe_master_slot(optimizer):
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
                       "FP16 training needs an optimizer with multi_precision support"
                       .format(type(optimizer).__name__))


def _is_half(param):
    return np.dtype(param.dtype) == np.float16


def _split(state, param, optimizer, slot):
    """(master or None, inner state) of one updater state."""
    if _is_half(param) and optimizer.multi_precision and isinstance(state, (tuple, list)):
        return state[slot], state[1 - slot]
    return None, state


def flatten_state(state, prefix, out, copy=False):
    """Spec of `state`; its arrays go to `out` as '<prefix>/<k>' (k counts within `out`)."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        out['{}/{}'.format(prefix, len(out))] = state.copy() if copy else state
        return 'a'
    return [flatten_state(s, prefix, out, copy) for s in state]


def capture_optimizer(trainer, names, copy=True):
    """The optimizer state of `trainer` (device-side copies when `copy`; no host reads)."""
    updater = trainer_updaters(trainer)[0]
    optimizer = trainer.optimizer
    slot = master_slot(optimizer) if optimizer.multi_precision else None
    arrays, layout = {}, {}
    for index, name, param in trainer_params(trainer, names):
        if index not in updater.states:
            continue
        _, inner = _split(updater.states[index], param, optimizer, slot)
        own = {}
        layout[name] = flatten_state(inner, name, own, copy)
        arrays.update(own)
    by_index = {i: name for i, name, _ in trainer_params(trainer, names)}
    counters = {'num_update': int(optimizer.num_update),
                'begin_num_update': int(optimizer.begin_num_update),
                'index_counts': {str(dev): {by_index[i]: int(c) for i, c in counts.items()
                                            if i in by_index}
                                 for dev, counts in update_counts(optimizer).items()}}
    return OptimizerState(arrays, layout, counters)


def master_arrays(trainer, names):
    """{structural name: FP32 master NDArray} of the FP16 parameters (live, not copies)."""
    updater = trainer_updaters(trainer)[0]
    optimizer = trainer.optimizer
    if not optimizer.multi_precision:
        return {}
    slot = master_slot(optimizer)
    out = {}
    for index, name, param in trainer_params(trainer, names):
        if index in updater.states:
            master, _ = _split(updater.states[index], param, optimizer, slot)
            if master is not None:
                out[name] = master
    return out


def _unflatten(spec, name, arrays, counter, ctx):
    if spec is None:
        return None
    if spec == 'a':
        key = '{}/{}'.format(name, counter[0])
        counter[0] += 1
        return arrays[key].copyto(ctx)
    return tuple(_unflatten(s, name, arrays, counter, ctx) for s in spec)


def install_optimizer(trainer, names, fp32_values, state=None):
    """Give every trained parameter of `trainer` its state, on every device.

    Parameters
    ----------
    trainer : gluon.Trainer
        Built after the network was cast to its current dtype.
    names : dict of int -> str
        ``id(Parameter)`` -> structural name.
    fp32_values : dict of str -> NDArray
        The FP32 value of each parameter; FP16 parameters take it (copied) as their master.
    state : OptimizerState or None
        Inner states and counters to restore; None starts fresh (zero momentum, no
        updates counted).
    """
    optimizer = trainer.optimizer
    slot = master_slot(optimizer) if optimizer.multi_precision else None
    layout = state.layout if state else {}
    updaters = trainer_updaters(trainer)
    for updater in updaters:
        updater.optimizer = optimizer
    for index, name, param in trainer_params(trainer, names):
        for updater, ctx in zip(updaters, param.list_ctx()):
            master = None
            if _is_half(param) and optimizer.multi_precision:
                master = fp32_values[name].copyto(ctx)
            if name in layout:
                inner = _unflatten(layout[name], name, state.arrays, [0], ctx)
            else:
                inner = optimizer.create_state(index, master if master is not None
                                               else param.data(ctx))
            if master is not None:
                inner = (master, inner) if slot == 0 else (inner, master)
            updater.states[index] = inner
            updater.states_synced[index] = True
    _set_counters(trainer, names, state.counters if state else None)


def _set_counters(trainer, names, counters):
    optimizer = trainer.optimizer
    if counters is None:
        return
    index_of = {name: i for i, name, _ in trainer_params(trainer, names)}
    optimizer.begin_num_update = int(counters['begin_num_update'])
    optimizer.num_update = int(counters['num_update'])
    set_update_counts(optimizer, {
        int(dev): {index_of[n]: int(c) for n, c in counts.items() if n in index_of}
        for dev, counts in counters['index_counts'].items()})
