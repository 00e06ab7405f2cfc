"""Weights from a checkpoint into a network.

Eval, export and demo (through :func:`initialise_with`), resume and ``--pretrained`` load
weights through :func:`load_params_into`: names and shapes are checked whole, by
:func:`gluoncv_fp16.model_zoo.params.param_mismatch`, before anything is written.
"""
import mxnet as mx
import numpy as np

from ..errors import CheckpointError
from ..model_zoo.params import named_params, param_mismatch, structural_params
from .format import read_checkpoint

__all__ = ['load_params_into', 'load_model', 'initialise_with', 'structural_params']


def load_params_into(net, params, origin='checkpoint'):
    """Copy `params` (structural name -> array) into `net`, cast to each parameter's dtype.

    `net` must be initialised with known shapes (run one forward first).

    Raises
    ------
    CheckpointError
        If names or shapes differ (another network or class count), before anything
        is modified.
    """
    own = named_params(net)
    mismatch = param_mismatch(own, params)
    if mismatch and mismatch.name is None:
        raise CheckpointError("{} does not match this network ({}). Was it saved from "
                              "another network?".format(origin, mismatch.names_text()))
    if mismatch:
        raise CheckpointError(
            "{}: parameter '{}' has shape {} but the network expects {} -- a different "
            "network or number of classes?".format(origin, mismatch.name,
                                                   mismatch.saved_shape, mismatch.own_shape))
    for name, param in own.items():
        value = params[name]
        array = value if isinstance(value, mx.nd.NDArray) else mx.nd.array(value,
                                                                            dtype='float32')
        param.set_data(array.astype(param.dtype))


def load_model(path, ctx=None, dtype='float32', **model_kwargs):
    """Rebuild the network a checkpoint was trained with and load its weights.

    Returns the FP16-safe network (cast to `dtype`) on `ctx` (default CPU).
    """
    from ..model_zoo import build_untrained  # checkpoint -> model_zoo is the allowed direction
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

