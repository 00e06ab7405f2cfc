"""One-time conversion of gluoncv_fp16 0.1 checkpoints, whose optimizer state is a pickle.

Version 0.1 stored ``gluon.Trainer.save_states`` output (``trainer.states``): a Python
pickle of the optimizer and its states. Unpickling runs whatever code the file names, so
no reader of this package does it -- except this converter, and only when the caller
says the file is trusted. The result is a version-2 checkpoint (NDArray files and JSON)
that resumes exactly where the old one would have.
"""
import json
import pickle
import zipfile

import mxnet as mx

from .checkpoint import CheckpointError, save_run_state
from ..model_zoo.params import named_params
from ..mxnet_compat import update_counts
from .state import STATE_VERSION, RunState
from ..precision.optimizer_state import OptimizerState, flatten_state
from ..precision.policy import FULL_PRECISION, get_policy

__all__ = ['convert_v1_checkpoint']


def _split_state(state, half, slot):
    """(master or None, inner) of one pickled updater state."""
    if half and isinstance(state, (tuple, list)) and len(state) == 2:
        return state[slot], state[1 - slot]
    return None, state


def _network_names(model):
    """[(structural name, Parameter)] of the model the file describes, in gluon.Trainer's
    index order (sorted by the parameters' prefixed names)."""
    from ..model_zoo import build_untrained
    net = build_untrained(model['name'], model['classes'])
    structural = named_params(net)
    by_prefixed = {p.name: (name, p) for name, p in structural.items()}
    return [by_prefixed[k] for k in sorted(by_prefixed)]


def convert_v1_checkpoint(path, out, trust_pickle=False):
    """Write `out`, a version-2 checkpoint equivalent to the version-1 file `path`.

    Raises CheckpointError unless `trust_pickle` (the file's pickle is executed).
    """
    origin = "'{}'".format(path)
    if not trust_pickle:
        raise CheckpointError("converting {} unpickles its optimizer state, which can run "
                              "code; pass --trust-pickle only for a file you trust".format(origin))
    try:
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read('state.json').decode('utf-8'))
            weights = mx.nd.load_frombuffer(zf.read('params.params'))
            pickled = zf.read('trainer.states')
    except (OSError, KeyError, zipfile.BadZipFile, ValueError, mx.base.MXNetError) as err:
        raise CheckpointError("{} is not a readable gluoncv_fp16 0.1 checkpoint ({})".format(
            origin, err)) from None
    loaded = pickle.loads(pickled)  # the opt-in: the caller trusts this file
    states, optimizer = loaded if isinstance(loaded, tuple) else (loaded, None)
    if optimizer is None:
        raise CheckpointError("{} holds optimizer states without the optimizer; it was not "
                              "written by gluoncv_fp16 0.1".format(origin))
    params = _network_names(meta['model'])
    try:  # FP16 phases kept (momentum, FP32 master) per parameter
        half = get_policy(meta.get('phase') or FULL_PRECISION).multi_precision
    except ValueError as err:
        raise CheckpointError('{}: {}'.format(origin, err)) from None
    slot = 1  # gluoncv_fp16 0.1 trained with SGD, whose multi-precision state is (mom, master)
    arrays, layout, index_counts = {}, {}, {}
    for index, (name, _) in enumerate(params):
        if index not in states:
            continue
        master, inner = _split_state(states[index], half, slot)
        if master is not None:
            weights[name] = master.astype('float32')
        own = {}
        layout[name] = flatten_state(inner, name, own)
        arrays.update({'opt:' + k: v for k, v in own.items()})
    for dev, counts in update_counts(optimizer).items():
        index_counts[str(dev)] = {params[i][0]: int(c) for i, c in counts.items()
                                  if i < len(params)}
    meta = dict(meta, state_version=STATE_VERSION, epoch_position=0, ema=None,
                optimizer={'layout': layout, 'counters': {
                    'num_update': int(optimizer.num_update),
                    'begin_num_update': int(optimizer.begin_num_update),
                    'index_counts': index_counts}})
    meta.pop('format_version', None)
    extra = {k: meta.pop(k) for k in ('model', 'config') if k in meta}
    state = RunState(weights, OptimizerState({k[4:]: v for k, v in arrays.items()}, layout,
                                             meta['optimizer']['counters']), meta)
    return save_run_state(out, state, extra)
