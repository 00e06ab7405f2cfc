"""One-file checkpoints holding everything needed to continue a run exactly.

A checkpoint is a zip archive (uncompressed) with three members:

``params.params``
    The network's parameters in MXNet's ``nd.save`` format, always FP32, under the same
    names as ``net.save_parameters`` -- so GluonCV tools can read them as they are.
``trainer.states``
    ``gluon.Trainer.save_states`` bytes: optimizer state, including the FP32 master
    weights when the run is FP16 with ``multi_precision``. Absent in weights-only files.
``state.json``
    Plain numbers and strings: model name and classes, epoch and iteration, precision
    phase, loss-scaler and hook states, RNG states, the run's config.

It is written to a temporary file in the same folder and renamed, so a run killed
while saving leaves the previous checkpoint intact.
"""
import json
import os
import tempfile
import zipfile

import mxnet as mx
import numpy as np

from ..utils.trainer_io import trainer_state_bytes

__all__ = ['Checkpoint', 'CheckpointError', 'save_checkpoint', 'read_checkpoint',
           'read_params', 'load_params_into', 'load_model', 'initialise_with',
           'structural_params']

_PARAMS, _STATES, _META = 'params.params', 'trainer.states', 'state.json'
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or belongs to another model."""


class Checkpoint:
    """What :func:`read_checkpoint` returns.

    Attributes
    ----------
    params : dict of str -> numpy.ndarray
        FP32 parameters by name.
    trainer_states : bytes or None
        `gluon.Trainer.load_states` input, or None for weights-only files.
    meta : dict
        Everything else (see module docstring); ``meta['model']`` has ``name`` and
        ``classes``.
    """

    def __init__(self, params, trainer_states, meta):
        self.params = params
        self.trainer_states = trainer_states
        self.meta = meta


def structural_params(net):
    """The net's parameters by structural name (as `save_parameters` names them)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'p.params')
        net.save_parameters(path)
        return mx.nd.load(path)


def _nd_bytes(arrays):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'p.params')
        mx.nd.save(path, arrays)
        with open(path, 'rb') as f:
            return f.read()


def _params_bytes(net):
    return _nd_bytes({k: v.astype('float32') for k, v in structural_params(net).items()})


def save_checkpoint(path, net, meta, trainer=None):
    """Atomically write `net`'s parameters, `trainer`'s states and `meta` to `path`.

    `meta` must be JSON-serialisable (plain numbers, strings, lists, dicts).
    """
    meta = dict(meta, format_version=FORMAT_VERSION)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.ckpt', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as raw, zipfile.ZipFile(raw, 'w', zipfile.ZIP_STORED) as zf:
            zf.writestr(_META, json.dumps(meta, indent=1, sort_keys=True))
            zf.writestr(_PARAMS, _params_bytes(net))
            if trainer is not None:
                zf.writestr(_STATES, trainer_state_bytes(trainer))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _load_nd_bytes(data, origin):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'p.params')
        with open(path, 'wb') as f:
            f.write(data)
        try:
            loaded = mx.nd.load(path)
        except mx.base.MXNetError as err:
            raise CheckpointError("'{}' holds no readable MXNet parameters ({})".format(
                origin, str(err).strip().splitlines()[-1])) from None
    if not isinstance(loaded, dict):
        raise CheckpointError("'{}' holds unnamed arrays, not network parameters".format(origin))
    return {_strip_prefix(k): v.asnumpy().astype(np.float32) for k, v in loaded.items()}


def _strip_prefix(name):
    # Module-style files prefix names with 'arg:' / 'aux:'.
    return name.split(':', 1)[1] if name.startswith(('arg:', 'aux:')) else name


def read_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`, or a plain ``.params`` file.

    Plain ``.params`` files (GluonCV's, or ``net.save_parameters``) come back with
    ``trainer_states=None`` and ``meta={}``.
    """
    if not os.path.isfile(path):
        raise CheckpointError("No checkpoint at '{}'".format(path))
    if not zipfile.is_zipfile(path):
        with open(path, 'rb') as f:
            return Checkpoint(_load_nd_bytes(f.read(), path), None, {})
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if not {_PARAMS, _META} <= names:
                raise CheckpointError("'{}' is a zip file but not a gluoncv_fp16 checkpoint "
                                      "(members: {})".format(path, sorted(names)))
            meta = json.loads(zf.read(_META).decode('utf-8'))
            params = _load_nd_bytes(zf.read(_PARAMS), path)
            states = zf.read(_STATES) if _STATES in names else None
    except (zipfile.BadZipFile, json.JSONDecodeError, EOFError) as err:
        raise CheckpointError("Checkpoint '{}' is corrupt ({}); use an earlier one".format(
            path, err)) from None
    return Checkpoint(params, states, meta)


def read_params(path):
    """Parameters by name (FP32 numpy) from a checkpoint or a plain ``.params`` file."""
    return read_checkpoint(path).params


def load_params_into(net, params, origin='checkpoint'):
    """Copy `params` (structural name -> array) into `net`, cast to each parameter's dtype.

    `net` must be initialised with known shapes (run one forward first).

    Raises
    ------
    CheckpointError
        If names or shapes differ (another network or class count), before anything
        is modified.
    """
    own = {k: v.shape for k, v in structural_params(net).items()}
    missing = sorted(set(own) - set(params))
    extra = sorted(set(params) - set(own))
    if missing or extra:
        raise CheckpointError(
            "{} does not match this network ({} parameters missing, {} unexpected; e.g. "
            "{}). Was it saved from another network?".format(
                origin, len(missing), len(extra), (missing or extra)[:3]))
    for name, shape in own.items():
        if tuple(shape) != tuple(params[name].shape):
            raise CheckpointError(
                "{}: parameter '{}' has shape {} but the network expects {} -- a different "
                "network or number of classes?".format(origin, name, params[name].shape, shape))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'p.params')
        mx.nd.save(path, {k: mx.nd.array(v) for k, v in params.items()})
        net.load_parameters(path, cast_dtype=True, dtype_source='current')


def load_model(path, ctx=None, dtype='float32', **model_kwargs):
    """Rebuild the network a checkpoint was trained with and load its weights.

    Returns the FP16-safe network (cast to `dtype`) on `ctx` (default CPU).
    """
    from ..model_zoo import build_untrained  # train -> model_zoo is the allowed direction
    ckpt = read_checkpoint(path)
    model = ckpt.meta.get('model')
    if not model:
        raise CheckpointError(
            "'{}' has no model description (a plain .params file?); build the network with "
            "gluoncv_fp16.model_zoo.get_model and call load_parameters instead".format(path))
    net = build_untrained(model['name'], model['classes'], **model_kwargs)
    if np.dtype(dtype) != np.float32:
        net.cast(dtype)
    return initialise_with(net, ckpt.params, ctx or mx.cpu(), origin="'{}'".format(path))


def initialise_with(net, params, ctx, origin='checkpoint'):
    """Initialise an untrained `net` (already cast to its dtype) on `ctx`, run one tiny
    forward so deferred shapes become known, and copy `params` in. Returns `net`."""
    net.initialize(ctx=ctx)
    dtype = net.yolo_outputs[0].prediction.weight.dtype if hasattr(net, 'yolo_outputs') \
        else 'float32'
    with mx.autograd.predict_mode():
        net(mx.nd.zeros((1, 3, 64, 64), ctx=ctx, dtype=dtype))
    load_params_into(net, params, origin=origin)
    return net
