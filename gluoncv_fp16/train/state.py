"""The run state: one object holding everything a run needs to continue exactly.

The same `RunState` has two forms:

* in memory, the NaN guard's snapshot: device-side copies of the arrays (enqueued, no
  host read, no pickling) plus plain numbers;
* on disk, a checkpoint (:mod:`.checkpoint` writes the file).

Resume and rollback restore through the same function, :func:`restore`; they differ only
in scope: a rollback keeps the run's counters (epoch, iteration, recoveries) and RNG.

What it holds:

``weights``   FP32 value of every parameter -- the FP32 master where the phase is FP16,
              BatchNorm statistics included -- by structural name (``features.0.weight``,
              the names of ``save_parameters``, so the checkpoint's weights load into
              stock GluonCV);
``optimizer`` inner optimizer state (momentum) and update counters, by parameter name
              (:mod:`..precision.optimizer_state`); the masters are ``weights``;
``ema``       the EMA weights, when the run keeps them;
``hooks``     each stateful hook's arrays (its plain values are in ``meta``);
``meta``      plain numbers: epoch, iteration, position in the epoch, precision phase,
              loss scaler, NaN guard, hook values, RNG.
"""
import random

import mxnet as mx
import numpy as np

from ..checkpoint.format import EMA_PREFIX
from ..model_zoo.params import param_mismatch
from ..precision.optimizer_state import OptimizerState, capture_optimizer
from ..precision.policy import policy_names

__all__ = ['RunState', 'capture', 'restore', 'rng_state', 'restore_rng',
           'STATE_VERSION']

STATE_VERSION = 2  # 1: trainer state pickled by gluon.Trainer.save_states (refused)


class RunState:
    """See the module docstring. Arrays may live on any device."""

    def __init__(self, weights, optimizer, meta, ema=None, hooks=None, guard_snapshot=None):
        self.weights = weights
        self.optimizer = optimizer
        self.meta = meta
        self.ema = ema or {}
        self.hooks = hooks or {}
        # The NaN guard's rollback target, when it is not this state itself (a checkpoint
        # written between snapshot points): a resumed run must hold the same target.
        self.guard_snapshot = guard_snapshot

    @property
    def iteration(self):
        return self.meta['iteration']

    @property
    def phase(self):
        return self.meta['phase']

    def arrays(self):
        """Every array but the weights, under flat names ('opt:', 'ema:', 'hook:'; a carried
        guard snapshot's under 'snap:', its weights under 'snap:w:')."""
        flat = {'opt:' + k: v for k, v in self.optimizer.arrays.items()}
        flat.update({EMA_PREFIX + k: v for k, v in self.ema.items()})
        for hook, arrays in self.hooks.items():
            flat.update({'hook:{}:{}'.format(hook, k): v for k, v in arrays.items()})
        if self.guard_snapshot is not None:
            snap = self.guard_snapshot
            flat.update({'snap:w:' + k: v for k, v in snap.weights.items()})
            flat.update({'snap:' + k: v for k, v in snap.arrays().items()})
        return flat

    def disk_meta(self):
        """`meta` plus the carried snapshot's, as written to state.json."""
        if self.guard_snapshot is None:
            return dict(self.meta)
        return dict(self.meta, guard_snapshot=self.guard_snapshot.meta)

    @classmethod
    def from_parts(cls, weights, arrays, meta):
        """The inverse of (weights, :meth:`arrays`, meta) as stored on disk."""
        opt, ema, hooks, snap_weights, snap = {}, {}, {}, {}, {}
        for key, value in arrays.items():
            kind, _, rest = key.partition(':')
            if kind == 'snap':
                if rest.startswith('w:'):
                    snap_weights[rest[2:]] = value
                else:
                    snap[rest] = value
            elif kind == 'opt':
                opt[rest] = value
            elif key.startswith(EMA_PREFIX):
                ema[key[len(EMA_PREFIX):]] = value
            elif kind == 'hook':
                hook, _, name = rest.partition(':')
                hooks.setdefault(hook, {})[name] = value
            else:
                raise ValueError("unknown state array {!r}".format(key))
        optimizer = OptimizerState(opt, meta['optimizer']['layout'],
                                   meta['optimizer']['counters'])
        snapshot = None
        if meta.get('guard_snapshot'):
            snapshot = cls.from_parts(snap_weights, snap, meta['guard_snapshot'])
        meta = {k: v for k, v in meta.items() if k != 'guard_snapshot'}
        return cls(weights, optimizer, meta, ema=ema, hooks=hooks, guard_snapshot=snapshot)


def _split_hook_state(state):
    """A hook's state_dict -> (plain values, arrays)."""
    arrays = {k: v for k, v in state.items() if isinstance(v, mx.nd.NDArray)}
    return {k: v for k, v in state.items() if k not in arrays}, arrays


# The EMA hook's state is stored under its own keys ('ema:<param>' arrays, meta['ema']),
# the layout of checkpoints written before EMA was a hook.
_EMA = 'ema'


def capture(loop, copy=True):
    """The loop's state, composed from its parts' own state dicts. With `copy` the arrays
    are device-side copies (a snapshot); without, views of the live arrays (only to be
    written out at once)."""
    dup = (lambda a: a.copy()) if copy else (lambda a: a)
    weights = {name: dup(value) for name, value in loop.fp32_weights().items()}
    optimizer = capture_optimizer(loop.trainer, loop.param_ids, copy=copy)
    hook_values, hook_arrays = {}, {}
    for hook in loop.hooks:
        if hook.name:
            values, arrays = _split_hook_state(hook.state_dict())
            hook_values[hook.name] = values
            if arrays:
                hook_arrays[hook.name] = {k: dup(v) for k, v in arrays.items()}
    meta = dict(loop.progress_state(), state_version=STATE_VERSION,
                scaler=loop.scaler.state_dict(), guard=loop.guard.state_dict(),
                optimizer=optimizer.meta(), rng=rng_state())
    meta['ema'] = hook_values.pop(_EMA, None)
    ema = {k[2:]: v for k, v in hook_arrays.pop(_EMA, {}).items()}
    meta['hooks'] = hook_values
    snapshot = loop.guard.snapshot
    # Mid-epoch (a signal or --checkpoint-every) is not a snapshot point: carry the guard's.
    carried = None if copy or loop.epoch_done or snapshot is None or \
        snapshot.iteration == loop.iteration else snapshot
    return RunState(weights, optimizer, meta, ema=ema, hooks=hook_arrays,
                    guard_snapshot=carried)


def _hook_states(state):
    """{hook name: its state_dict} held by `state` (plain values and arrays)."""
    meta = state.meta
    states = {name: dict(values, **state.hooks.get(name, {}))
              for name, values in meta.get('hooks', {}).items()}
    if meta.get('ema'):
        states[_EMA] = dict(meta['ema'], **{'w:' + k: v for k, v in state.ema.items()})
    return states


def check_compatible(state, loop, origin):
    """Raise ValueError naming what in `state` this version or this run cannot restore."""
    meta = state.meta
    version = meta.get('state_version')
    if version != STATE_VERSION:
        raise ValueError("{} has run-state version {}, this version of gluoncv_fp16 reads "
                         "version {}".format(origin, version, STATE_VERSION))
    if meta.get('phase') not in policy_names():
        raise ValueError("{} was saved in precision phase {!r}, which this version does not "
                         "know (known: {})".format(origin, meta.get('phase'),
                                                   list(policy_names())))
    mismatch = param_mismatch(loop.param_names, state.weights)
    if mismatch:
        raise ValueError(mismatch.message(origin))
    known_hooks = {h.name for h in loop.hooks if h.name}
    if bool(meta.get('ema')) != (_EMA in known_hooks):
        raise ValueError("{} was saved {} EMA weights; resume with the same --ema setting"
                         .format(origin, 'with' if meta.get('ema') else 'without'))
    unknown = sorted(set(meta.get('hooks', {})) - known_hooks)
    if unknown:
        raise ValueError("{} holds state of {} that this run does not have (resume with the "
                         "options it was trained with)".format(origin, unknown))
    saved = _hook_states(state)
    for hook in loop.hooks:
        problem = hook.check_resume(saved.get(hook.name)) if hook.name else None
        if problem:
            raise ValueError("{} {}".format(origin, problem))


def restore(loop, state, rollback=False):
    """Put `state` into `loop`: weights, precision phase, optimizer, scaler, hooks (EMA
    among them), each through its own ``load_state_dict``.

    A resume (`rollback` False) also restores the counters, the NaN guard and the RNG. The
    trainer is kept when the dtype does not change: a new one would initialise its
    kvstore keys again, which a dist kvstore refuses.
    """
    meta = state.meta
    loop.install_phase(meta['phase'], state.weights, state.optimizer)
    if meta['scaler'].get('mode') == loop.scaler.mode:
        loop.scaler.load_state_dict(meta['scaler'])
    hook_states = _hook_states(state)
    for hook in loop.hooks:
        if hook.name and hook.name in hook_states:
            hook.load_state_dict(hook_states[hook.name])
    if rollback:
        return
    loop.load_progress_state(meta)
    loop.guard.load_state_dict(meta['guard'])
    loop.guard.snapshot = state.guard_snapshot
    restore_rng(meta.get('rng'))


def rng_state():
    """Python and NumPy global RNG states as JSON-able lists."""
    state = np.random.get_state()
    return {'numpy': [state[0], state[1].tolist(), int(state[2]), int(state[3]),
                      float(state[4])], 'python': _lists(random.getstate())}


def restore_rng(state):
    if not state:
        return
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(_tuples(state['python']))


def _lists(value):
    return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
