"""Run a trained detector on image files: load, preprocess, detect, draw.

A detector comes from a gluoncv_fp16 checkpoint (rebuilt with
:func:`~gluoncv_fp16.train.checkpoint.load_model`) or from an export written by
:func:`~gluoncv_fp16.deploy.export.export_detector`. Images are preprocessed exactly as
in validation (GluonCV's ``YOLO3DefaultValTransform``: resize to a square
``data_shape``, to tensor, ImageNet normalisation), so the detector sees what it was
evaluated on; boxes are then scaled back to the original image's pixels.
"""
import json
import logging
import os

import cv2
import mxnet as mx
import numpy as np
from mxnet import autograd

from ..train.checkpoint import load_model
from .export import export_paths, widened_convolutions

__all__ = ['PredictError', 'Detections', 'Detector', 'load_detector', 'read_image',
           'preprocess', 'draw_detections']

logger = logging.getLogger(__name__)


class PredictError(ValueError):
    """An image or a model cannot be used for prediction (the message says why)."""


class Detections:
    """Detections of one image, in the original image's pixel coordinates.

    Attributes
    ----------
    boxes : numpy.ndarray, (N, 4) float32
        ``xmin, ymin, xmax, ymax``, clipped to the image.
    scores : numpy.ndarray, (N,) float32
    class_ids : numpy.ndarray, (N,) int64
    """

    def __init__(self, boxes, scores, class_ids):
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)

    def __len__(self):
        return len(self.scores)


def read_image(path):
    """Read an image file as (H, W, 3) uint8 BGR, or raise a :class:`PredictError`."""
    if not os.path.isfile(path):
        raise PredictError("No image at '{}'".format(path))
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise PredictError("'{}' is not an image OpenCV can read (JPEG, PNG, BMP, ...)"
                           .format(path))
    return image


def preprocess(image_bgr, data_shape, dtype='float32'):
    """(1, 3, S, S) network input from a BGR image, as GluonCV's YOLO validation transform."""
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultValTransform
    rgb = mx.nd.array(image_bgr[:, :, ::-1], dtype='uint8')
    tensor, _ = YOLO3DefaultValTransform(data_shape, data_shape)(
        rgb, np.zeros((0, 4), dtype=np.float32))
    return tensor.expand_dims(0).astype(dtype)


def _to_original(boxes, data_shape, height, width):
    """Scale boxes from the square network input back to a (height, width) image."""
    scale = np.array([width, height, width, height], dtype=np.float32) / data_shape
    scaled = boxes * scale
    limits = np.array([width, height, width, height], dtype=np.float32)
    return np.clip(scaled, 0, limits)


class Detector:
    """A loaded detector plus what is needed to use it on images.

    Parameters
    ----------
    block : mxnet.gluon.HybridBlock
        Maps (B, 3, S, S) `dtype` input to FP32 ``(ids, scores, boxes)``.
    classes : list of str
    dtype : str
        The input dtype the block expects.
    data_shape : int
        Square input side images are resized to.
    ctx : mxnet.Context
    """

    def __init__(self, block, classes, dtype, data_shape, ctx):
        self.block = block
        self.classes = list(classes)
        self.dtype = dtype
        self.data_shape = data_shape
        self.ctx = ctx

    def detect(self, image_bgr, thresh=0.5):
        """Detections with score >= `thresh` on one (H, W, 3) BGR image."""
        height, width = image_bgr.shape[:2]
        x = preprocess(image_bgr, self.data_shape, self.dtype).as_in_context(self.ctx)
        with autograd.predict_mode():
            ids, scores, boxes = self.block(x)
        ids, scores, boxes = ids[0].asnumpy(), scores[0].asnumpy(), boxes[0].asnumpy()
        # NMS marks suppressed rows with id -1.
        keep = (ids[:, 0] >= 0) & (scores[:, 0] >= thresh)
        return Detections(_to_original(boxes[keep], self.data_shape, height, width),
                          scores[keep, 0], ids[keep, 0])


def _read_export_meta(prefix):
    meta_file = export_paths(prefix)[2]
    if not os.path.isfile(meta_file):
        logger.warning("no %s; classes will be shown as numbers", meta_file)
        return {}
    with open(meta_file) as f:
        return json.load(f)


def _load_export(prefix, ctx):
    """(SymbolBlock, meta) of an export; refuses an FP16 GPU export on a CPU context."""
    symbol_file, params_file, _ = export_paths(prefix)
    for path in (symbol_file, params_file):
        if not os.path.isfile(path):
            raise PredictError("No exported model at '{}' (missing {}); write one with "
                               "scripts/export.py".format(prefix, path))
    meta = _read_export_meta(prefix)
    symbol = mx.sym.load(symbol_file)
    dtype = meta.get('dtype') or _data_dtype(symbol)
    on_cpu = ctx.device_type.startswith('cpu')
    if dtype == 'float16' and on_cpu and not widened_convolutions(symbol):
        raise PredictError(
            "'{}' is an FP16 export for GPUs; MXNet's CPU build cannot run FP16 "
            "convolutions. Run it on a GPU, or re-export with --target cpu (or "
            "--dtype float32) to run on a CPU".format(prefix))
    # Declaring the input dtype lets every parameter keep its saved dtype.
    block = mx.gluon.SymbolBlock(symbol, [mx.sym.var('data', dtype=dtype)])
    try:
        block.collect_params().load(params_file, ctx=ctx, cast_dtype=True,
                                    dtype_source='saved')
    except (AssertionError, mx.base.MXNetError) as err:
        raise PredictError("'{}' does not match '{}': {}".format(
            params_file, symbol_file, str(err).strip().splitlines()[0])) from None
    return block, dict(meta, dtype=dtype)


def _data_dtype(symbol):
    """The 'data' input's dtype recorded in the graph (export sets it), else float32."""
    arg_types, _, _ = symbol.infer_type_partial()
    found = dict(zip(symbol.list_arguments(), arg_types or [])).get('data')
    return np.dtype(found).name if found is not None else 'float32'


def load_detector(checkpoint=None, exported=None, data_shape=None, ctx=None):
    """A :class:`Detector` from a checkpoint or an export prefix (exactly one of them).

    Parameters
    ----------
    checkpoint : str, optional
        A gluoncv_fp16 checkpoint (run in FP32).
    exported : str, optional
        An export prefix (``PREFIX-symbol.json`` / ``PREFIX-0000.params``), in the
        export's dtype.
    data_shape : int, optional
        Input side; default: the export's recorded one, else 416.
    ctx : mxnet.Context, optional
        Default CPU.

    Raises
    ------
    PredictError
        Both or neither source given, an unusable export.
    gluoncv_fp16.train.checkpoint.CheckpointError
        Missing, corrupt or description-less checkpoint.
    """
    if (checkpoint is None) == (exported is None):
        raise PredictError("give exactly one of checkpoint= (--params) or exported= "
                           "(--exported), got {}".format(
                               'both' if checkpoint is not None else 'neither'))
    ctx = ctx or mx.cpu()
    if checkpoint is not None:
        net = load_model(checkpoint, ctx=ctx)
        net.hybridize()
        return Detector(net, net.classes, 'float32', data_shape or 416, ctx)
    block, meta = _load_export(exported, ctx)
    classes = meta.get('model', {}).get('classes') or []
    return Detector(block, classes, meta['dtype'], data_shape or meta.get('data_shape', 416),
                    ctx)


def _color(class_id):
    """A stable, distinct BGR colour per class."""
    hue = int(class_id * 47) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_detections(image_bgr, detections, classes):
    """A copy of `image_bgr` with each box, its class name and score drawn on it."""
    canvas = image_bgr.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    for box, score, cid in zip(detections.boxes, detections.scores, detections.class_ids):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        color = _color(cid)
        name = classes[cid] if 0 <= cid < len(classes) else 'class {}'.format(cid)
        label = '{} {:.2f}'.format(name, score)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, thickness)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y0, th + base)
        cv2.rectangle(canvas, (x0, top - th - base), (x0 + tw, top), color, -1)
        cv2.putText(canvas, label, (x0, top - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
