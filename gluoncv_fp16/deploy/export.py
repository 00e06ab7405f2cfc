"""Export a trained detector to a deployable symbol + params pair, in FP32 or FP16.

``export_detector(checkpoint, prefix, dtype)`` writes

``PREFIX-symbol.json``
    The inference graph: input ``data`` (B, 3, H, W) in `dtype`, outputs
    ``(ids, scores, boxes)`` (B, K, 1) / (B, K, 1) / (B, K, 4), always FP32 -- the
    prediction convs return FP32 and decode/NMS run in FP32 (see ``model_zoo/yolo3.py``).
``PREFIX-0000.params``
    The weights in the graph's dtypes (FP16 convolutions, FP32 BatchNorm, anchors and
    offsets for an FP16 export), named as ``gluon.SymbolBlock.imports`` expects.
``PREFIX-meta.json``
    Model name, class names, dtype, target, data shape and mean/std, so a demo can
    preprocess images as in training and label boxes.
    Optional for loading: ``SymbolBlock.imports(PREFIX-symbol.json, ['data'],
    PREFIX-0000.params)`` needs only the first two files.

Why the graph is traced by hand rather than with ``HybridBlock.export`` or GluonCV's
``export_block``: both export the graph cached by a forward pass, and on a CPU that
graph of an FP16 net contains :mod:`~gluoncv_fp16.precision.cpu_half`'s FP32-widening
casts around every convolution (``export_block`` also feeds FP32 zeros, which an FP16
net rejects). The shim widens only when a weight is FP16 *and lives on a CPU context*,
so for a GPU export (``target='gpu'``, the default) the graph is traced from the fresh,
cast network *before* it is initialised -- its weights have no context yet -- and the
weights are loaded afterwards. ``target='cpu'`` traces after initialisation on the CPU,
keeping the casts, so an FP16 export can be run (and tested) on a machine without a GPU.
"""
import json
import logging
import os

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..checkpoint import initialise_with, read_source
from ..errors import ExportError, SourceError
from ..model_zoo.anchors import network_anchors

__all__ = ['ExportError', 'ExportedFiles', 'export_detector', 'export_paths',
           'inference_symbol', 'widened_convolutions', 'TARGETS']

logger = logging.getLogger(__name__)

TARGETS = ('gpu', 'cpu')
_DTYPES = ('float32', 'float16')


class ExportedFiles:
    """Paths written by :func:`export_detector` (see :func:`export_paths`)."""

    def __init__(self, prefix):
        self.symbol, self.params, self.meta = export_paths(prefix)

    def __repr__(self):
        return 'ExportedFiles({!r}, {!r}, {!r})'.format(self.symbol, self.params, self.meta)


def export_paths(prefix, epoch=0):
    """``(symbol_json, params, meta_json)`` paths for an export `prefix`."""
    return ('{}-symbol.json'.format(prefix), '{}-{:04d}.params'.format(prefix, epoch),
            '{}-meta.json'.format(prefix))


def inference_symbol(net, dtype):
    """Trace `net`'s inference graph: input ``data`` of `dtype`, outputs (ids, scores, boxes).

    The dtype is recorded on the ``data`` variable, so ``infer_type()`` of the loaded
    symbol needs no arguments. Whether CPU widening casts appear depends on `net`'s
    weights' contexts at this moment (see the module docstring).
    """
    with autograd.predict_mode():
        outputs = net(mx.sym.var('data', dtype=dtype))
    return mx.sym.Group(list(outputs))


def widened_convolutions(symbol):
    """How many Convolution/FullyConnected nodes read a Cast (the CPU shim's widening)."""
    nodes = json.loads(symbol.tojson())['nodes']
    return sum(1 for node in nodes if node['op'] in ('Convolution', 'FullyConnected')
               and any(nodes[entry[0]]['op'] == 'Cast' for entry in node['inputs']))


def _arrays_for(symbol, net):
    """The net's weights keyed ``arg:NAME`` / ``aux:NAME`` as the symbol names them."""
    args, aux = set(symbol.list_arguments()), set(symbol.list_auxiliary_states())
    arrays = {}
    for param in net.collect_params().values():
        if param.name in args:
            arrays['arg:' + param.name] = param.data()
        elif param.name in aux:
            arrays['aux:' + param.name] = param.data()
    missing = (args | aux) - {'data'} - {k.split(':', 1)[1] for k in arrays}
    if missing:
        raise ExportError("the traced graph uses parameters the network does not have: {}"
                          .format(sorted(missing)[:5]))
    return arrays


def _check_graph(symbol, dtype, data_shape, target):
    """Type- and shape-check the exported graph; FP32 outputs whatever the input dtype."""
    _, out_types, _ = symbol.infer_type(data=dtype)
    if [np.dtype(t) for t in out_types] != [np.dtype('float32')] * 3:
        raise ExportError("exported graph outputs {} for {} input; expected three float32 "
                          "outputs".format([np.dtype(t).name for t in out_types], dtype))
    symbol.infer_shape(data=(1, 3, data_shape, data_shape))
    widened = widened_convolutions(symbol)
    if np.dtype(dtype) == np.float16 and (widened > 0) != (target == 'cpu'):
        raise ExportError("FP16 export for '{}' has {} FP32-widened convolutions; the CPU "
                          "shim's casts were {} -- please report this".format(
                              target, widened, 'kept' if widened else 'not added'))


def _validate(dtype, target, data_shape):
    if dtype not in _DTYPES:
        raise ExportError("dtype must be one of {}, got {!r}".format(_DTYPES, dtype))
    if target not in TARGETS:
        raise ExportError("target must be one of {}, got {!r}".format(TARGETS, target))
    if data_shape is not None and (not isinstance(data_shape, int) or data_shape < 32 or
                                   data_shape % 32):
        raise ExportError("data_shape must be a multiple of 32 (YOLOv3's stride) such as "
                          "320, 416 or 608, got {!r}".format(data_shape))


def untrained_from(checkpoint, network=None, classes=None):
    """(source, untrained network) a checkpoint or weights file describes; ExportError when
    it cannot say which network (the exports' shared first step)."""
    try:
        source = read_source(checkpoint, network, classes)
        return source, source.untrained()
    except SourceError as err:
        raise ExportError(str(err)) from None


def export_detector(checkpoint, prefix, dtype='float32', target='gpu', data_shape=None,
                    network=None, classes=None):
    """Write `checkpoint`'s detector as ``PREFIX-symbol.json`` + ``PREFIX-0000.params``.

    Parameters
    ----------
    checkpoint : str
        A gluoncv_fp16 checkpoint (model name and classes inside), or a plain ``.params``
        file (then `network`, and `classes` if they differ from the dataset's, are needed).
    prefix : str
        Output path prefix; its folder is created.
    dtype : {'float32', 'float16'}
        Input and compute dtype of the exported graph. Outputs are FP32 either way.
    target : {'gpu', 'cpu'}
        FP16 only: 'gpu' writes the plain FP16 graph (MXNet's CPU build cannot run its
        convolutions); 'cpu' keeps the FP32-widened convolutions so it runs on a CPU.
    data_shape : int, optional
        Square input side used to check the graph, recorded for users of the export.
        Default: the checkpoint's training data shape, else 416.
    network : str, optional
        Model name for a plain ``.params`` file, e.g. ``'yolo3_darknet53_voc'``.
    classes : list of str, optional
        Class names for a plain ``.params`` file.

    Returns
    -------
    ExportedFiles
        ``.symbol``, ``.params``, ``.meta`` paths.

    Raises
    ------
    ExportError
        Bad arguments, a plain ``.params`` without `network`, or a failed graph check.
    gluoncv_fp16.errors.CheckpointError
        Missing or unreadable checkpoint, or weights of another network / class count.
    """
    _validate(dtype, target, data_shape)
    source, net = untrained_from(checkpoint, network, classes)
    data_shape = data_shape or source.data_shape
    name = source.name
    if dtype == 'float16':
        net.cast('float16')
    symbol = inference_symbol(net, dtype) if target == 'gpu' else None
    initialise_with(net, source.params, mx.cpu(), origin="'{}'".format(checkpoint))
    if symbol is None:
        symbol = inference_symbol(net, dtype)
    _check_graph(symbol, dtype, data_shape, target)
    files = ExportedFiles(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    symbol.save(files.symbol)
    mx.nd.save(files.params, _arrays_for(symbol, net))
    meta = dict(model=dict(name=name, classes=list(net.classes),
                           anchors=network_anchors(net)), dtype=dtype,
                target=target if dtype == 'float16' else 'any', data_shape=data_shape,
                mean=list(source.mean), std=list(source.std),
                inputs=['data'], outputs=['ids', 'scores', 'boxes'])
    with open(files.meta, 'w') as f:
        json.dump(meta, f, indent=1)
    logger.info("exported %s (%s, %s) to %s", name, dtype, meta['target'], files.symbol)
    return files

