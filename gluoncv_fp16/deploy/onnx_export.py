"""Export a trained detector to one ONNX file that returns MXNet's final detections.

``export_onnx(checkpoint, prefix)`` writes ``PREFIX.onnx``:

* input ``data``: (N, 3, S, S) normalised RGB batch, float32 or float16 (the batch size
  is dynamic, the side fixed at export);
* outputs ``ids`` (N, K, 1), ``scores`` (N, K, 1), ``boxes`` (N, K, 4), float32, exactly
  as the MXNet detector returns them in predict mode (K = GluonCV's ``post_nms``, 100,
  rows without a detection are -1);
* metadata (``metadata_props``): model name, classes (JSON), data shape, mean, std,
  dtype, so the demo and evaluation need nothing else.

How: the network with its NMS switched off (``set_nms(nms_thresh=0)``: it then returns
every per-class candidate) is converted with MXNet's ``mx.onnx``, which matches MXNet
there; GluonCV's topk, per-class NMS and post-NMS limit are appended as ONNX operators
(:mod:`.onnx_nms`). An FP16 export is traced before the weights are put on the CPU, so
it has no CPU widening casts (see :mod:`.export`); its prediction layers return FP32,
so the decode, NMS and outputs are FP32.
"""
import json
import logging
import os
import tempfile

import mxnet as mx
import numpy as np

from ..checkpoint import initialise_with
from .export import ExportError, inference_symbol, untrained_from
from .onnx_nms import append_postprocessing

__all__ = ['export_onnx', 'OnnxExport', 'ONNX_OUTPUTS', 'require_onnx']

logger = logging.getLogger(__name__)

ONNX_OUTPUTS = ('ids', 'scores', 'boxes')
_DTYPES = ('float32', 'float16')
ONNX_PINS = 'pip install "onnx==1.15.0" && pip install --no-deps "onnxruntime==1.17.3"'


def require_onnx():
    """Import onnx, or raise ExportError with the install line (measured pins)."""
    try:
        import onnx  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        from onnx import mapping  # noqa: F401  mx.onnx needs it; onnx >= 1.16 removed it
    except ImportError as err:
        raise ExportError("ONNX export needs onnx 1.15 ({}); install it with: {}".format(
            err, ONNX_PINS)) from None
    return onnx


class OnnxExport:
    """What :func:`export_onnx` wrote: ``path``, ``metadata`` (dict), ``check`` (or None)."""

    def __init__(self, path, metadata, check=None):
        self.path, self.metadata, self.check = path, metadata, check


def _num_candidates(net, data_shape):
    """N rows the net's inference graph returns before NMS at this side (per image)."""
    sym = inference_symbol(net, 'float32')
    _, out_shapes, _ = sym.infer_shape_partial(data=(1, 3, data_shape, data_shape))
    return int(out_shapes[1][1])


def _validate(dtype, data_shape):
    if dtype not in _DTYPES:
        raise ExportError("dtype must be one of {}, got {!r}".format(_DTYPES, dtype))
    if data_shape is not None and (not isinstance(data_shape, int) or data_shape < 32
                                   or data_shape % 32):
        raise ExportError("data_shape must be a multiple of 32 (YOLOv3's stride) such as "
                          "320, 416 or 608, got {!r}".format(data_shape))


def _convert(symbol, net, data_shape, dtype, folder):
    """mx.onnx conversion of `symbol` (candidates, no NMS) -> onnx.ModelProto."""
    onnx = require_onnx()
    params = {p.name: p.data() for p in net.collect_params().values()}
    path = os.path.join(folder, 'candidates.onnx')
    shape = (1, 3, data_shape, data_shape)
    try:
        mx.onnx.export_model(symbol, params, in_shapes=[shape], in_types=[np.dtype(dtype)],
                             onnx_file_path=path, dynamic=True,
                             dynamic_input_shapes=[(None,) + shape[1:]])
    except Exception as err:  # mx.onnx raises bare AttributeError/KeyError on unsupported ops
        raise ExportError("mx.onnx could not convert the network: {}: {}".format(
            type(err).__name__, str(err).strip().splitlines()[0] if str(err) else '')) from err
    return onnx.load(path)


def _finish(model, metadata):
    """Weights are constants, not inputs (lets ONNX Runtime fold them); add metadata."""
    import onnx  # pylint: disable=import-outside-toplevel
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value if isinstance(value, str)
                                 else json.dumps(value))
    model.producer_name = 'gluoncv_fp16'
    onnx.checker.check_model(model)
    return model


def export_onnx(checkpoint, prefix, dtype='float32', data_shape=None, network=None,
                classes=None, check_images=None, tolerance=None):
    """Write ``PREFIX.onnx`` for `checkpoint` and check it against MXNet with ONNX Runtime.

    Parameters
    ----------
    checkpoint : str
        A gluoncv_fp16 checkpoint, or a plain ``.params`` file (then `network`).
    prefix : str
        Output path without ``.onnx``; its folder is created.
    dtype : {'float32', 'float16'}
        Input and compute dtype; the outputs are float32 either way.
    data_shape : int, optional
        Square input side; default the checkpoint's training data shape, else 416.
    network, classes : optional
        Model name and class names for a plain ``.params`` file.
    check_images : numpy.ndarray or None or False
        (B, 3, S, S) normalised float32 images for the self-check; None: synthetic
        images; False: no check.
    tolerance : dict, optional
        Override :func:`~.onnx_check.default_tolerance`.

    Returns
    -------
    OnnxExport

    Raises
    ------
    ExportError
        Bad arguments, onnx missing, or a conversion that fails.
    gluoncv_fp16.errors.CheckpointError
        Missing or unreadable checkpoint.
    """
    _validate(dtype, data_shape)
    require_onnx()
    source, net = untrained_from(checkpoint, network, classes)
    data_shape = data_shape or source.data_shape
    limits = dict(nms_thresh=net.nms_thresh, nms_topk=net.nms_topk, post_nms=net.post_nms)
    net.set_nms(nms_thresh=0, nms_topk=net.nms_topk, post_nms=net.post_nms)
    num_candidates = _num_candidates(net, data_shape)
    if dtype == 'float16':
        net.cast('float16')
    symbol = inference_symbol(net, dtype)  # before initialisation: no CPU widening casts
    initialise_with(net, source.params, mx.cpu(), origin="'{}'".format(checkpoint))
    with tempfile.TemporaryDirectory() as tmp:
        model = _convert(symbol, net, data_shape, dtype, tmp)
    append_postprocessing(model.graph, [o.name for o in model.graph.output], num_candidates,
                          len(net.classes), outputs=ONNX_OUTPUTS, **limits)
    metadata = dict(model=source.name, classes=list(net.classes), data_shape=data_shape,
                    mean=list(source.mean), std=list(source.std), dtype=dtype, **limits)
    model = _finish(model, metadata)
    path = prefix + '.onnx'
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    import onnx  # pylint: disable=import-outside-toplevel
    onnx.save(model, path)
    logger.info('wrote %s (%s, %d px, %d classes)', path, dtype, data_shape, len(net.classes))
    result = OnnxExport(path, metadata)
    if check_images is not False:
        from .onnx_check import check_export  # pylint: disable=import-outside-toplevel
        net.set_nms(**limits)
        result.check = check_export(path, net, dtype, data_shape, source.mean, source.std,
                                    images=check_images, tolerance=tolerance)
    return result
