"""Run a trained detector on image files: load, preprocess, detect, draw.

A detector comes from a gluoncv_fp16 checkpoint, from an MXNet export written by
:func:`~gluoncv_fp16.deploy.export.export_detector`, or from an ONNX export (run with
ONNX Runtime). Images are preprocessed exactly as in validation (GluonCV's
``YOLO3DefaultValTransform``: resize to a square ``data_shape``, to tensor, normalise),
with the data shape and mean/std the model recorded, so the detector sees what it was
evaluated on; boxes are then scaled back to the original image's pixels.
"""
import json
import logging
import os

import cv2
import mxnet as mx
import numpy as np
from mxnet import autograd

from ..checkpoint import IMAGENET_MEAN, IMAGENET_STD, read_source
from .export import export_paths, widened_convolutions
from .onnx_runtime import OnnxDetector, OnnxRuntimeError, load_onnx
from ..errors import PredictError, SourceError

__all__ = ['PredictError', 'Detections', 'Detector', 'load_detector', 'read_image',
           'preprocess', 'draw_detections', 'label_boxes', 'auto_threshold']

logger = logging.getLogger(__name__)


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


def preprocess(image_bgr, data_shape, dtype='float32', mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(1, 3, S, S) network input from a BGR image, as GluonCV's YOLO validation transform."""
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultValTransform
    rgb = mx.nd.array(image_bgr[:, :, ::-1], dtype='uint8')
    tensor, _ = YOLO3DefaultValTransform(data_shape, data_shape, mean=tuple(mean),
                                         std=tuple(std))(rgb, np.zeros((0, 4),
                                                                       dtype=np.float32))
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
    block : callable
        Maps (B, 3, S, S) `dtype` input to FP32 ``(ids, scores, boxes)``: an MXNet
        HybridBlock (NDArray in and out) or an :class:`~.onnx_runtime.OnnxDetector`
        (numpy in and out).
    classes : list of str
    dtype : str
        The input dtype the block expects.
    data_shape : int
        Square input side images are resized to.
    ctx : mxnet.Context
    mean, std : tuple of float
        RGB normalisation the model was trained with.
    """

    def __init__(self, block, classes, dtype, data_shape, ctx, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD):
        self.block = block
        self.classes = list(classes)
        self.dtype = dtype
        self.data_shape = data_shape
        self.ctx = ctx
        self.mean, self.std = tuple(mean), tuple(std)

    @property
    def precision(self):
        """What the detector computes in: 'int8' for an INT8 export, else its dtype."""
        return getattr(self.block, 'precision', self.dtype)

    def _run(self, x):
        if isinstance(self.block, OnnxDetector):
            return self.block(x.asnumpy())
        with autograd.predict_mode():
            return [a.asnumpy() for a in self.block(x.as_in_context(self.ctx))]

    def predict(self, batch):
        """(ids, scores, boxes) FP32 numpy for a (B, 3, S, S) normalised float32 batch."""
        return self._run(mx.nd.array(batch, dtype=self.dtype))

    def detect(self, image_bgr, thresh=0.5):
        """Detections with score >= `thresh` on one (H, W, 3) BGR image."""
        height, width = image_bgr.shape[:2]
        x = preprocess(image_bgr, self.data_shape, self.dtype, self.mean, self.std)
        ids, scores, boxes = (a[0] for a in self._run(x))
        # NMS marks suppressed rows with id -1.
        keep = (ids[:, 0] >= 0) & (scores[:, 0] >= thresh)
        return Detections(_to_original(boxes[keep], self.data_shape, height, width),
                          scores[keep, 0], ids[keep, 0])


def auto_threshold(top_scores):
    """The default drawing threshold: half the best score seen.

    GluonCV's fixed 0.5 draws nothing for a briefly trained model whose best scores are
    0.3-0.4, and a fixed low value floods a good model's pictures; half the best score
    keeps each picture's confident detections whatever the model's calibration.
    """
    return 0.5 * max([float(s) for s in top_scores] or [0.0])


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


def load_detector(checkpoint=None, exported=None, onnx=None, data_shape=None, ctx=None,
                  providers=None):
    """A :class:`Detector` from a checkpoint, an MXNet export prefix or an ONNX file.

    Parameters
    ----------
    checkpoint : str, optional
        A gluoncv_fp16 checkpoint (run in FP32).
    exported : str, optional
        An MXNet export prefix (``PREFIX-symbol.json`` / ``PREFIX-0000.params``), in the
        export's dtype.
    onnx : str, optional
        A ``.onnx`` file from ``scripts/export.py --format onnx``, run with ONNX Runtime.
    data_shape : int, optional
        Input side; default: what the model recorded (training size), else 416.
    ctx : mxnet.Context, optional
        Default CPU.
    providers : list of str, optional
        ONNX Runtime execution providers (``onnx`` only).

    Raises
    ------
    PredictError
        Not exactly one source given, an unusable export.
    gluoncv_fp16.errors.CheckpointError
        Missing, corrupt or description-less checkpoint.
    """
    given = [s for s in (checkpoint, exported, onnx) if s is not None]
    if len(given) != 1:
        raise PredictError("give exactly one of checkpoint= (--params), exported= (--exported) "
                           "or onnx= (--onnx), got {}".format(len(given) or 'none'))
    ctx = ctx or mx.cpu()
    if checkpoint is not None:
        try:
            source = read_source(checkpoint)
        except SourceError:
            raise PredictError(
                "'{}' has no model description (a plain .params file?); export it with "
                "scripts/export.py FILE --network NAME and use --exported or --onnx"
                .format(checkpoint)) from None
        net = source.build('float32', ctx)
        net.hybridize()
        return Detector(net, net.classes, 'float32', data_shape or source.data_shape, ctx,
                        source.mean, source.std)
    if onnx is not None:
        try:
            runner = load_onnx(onnx, providers=providers)
        except OnnxRuntimeError as err:
            raise PredictError(str(err)) from None
        if data_shape and data_shape != runner.data_shape:
            raise PredictError("'{}' was exported for {} px inputs; drop --data-shape or "
                               "re-export with --data-shape {}".format(
                                   onnx, runner.data_shape, data_shape))
        return Detector(runner, runner.classes, runner.dtype, runner.data_shape, ctx,
                        runner.mean, runner.std)
    block, meta = _load_export(exported, ctx)
    classes = meta.get('model', {}).get('classes') or []
    return Detector(block, classes, meta['dtype'], data_shape or meta.get('data_shape', 416),
                    ctx, meta.get('mean', IMAGENET_MEAN), meta.get('std', IMAGENET_STD))


def _color(class_id):
    """A stable, distinct BGR colour per class."""
    hue = int(class_id * 47) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


_FONT, _SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.4


def _label(name, score):
    return '{} {:.2f}'.format(name, score)


def _overlaps(rect, rects):
    x0, y0, x1, y1 = rect
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in rects)


def _free_spot(rects, x0, y0, y1, tw, h, width, height):
    """First label rectangle not overlapping `rects`: above the box, inside its top,
    below it, then anywhere scanning down and right in half-label steps."""
    def clamp(x, y):
        x, y = min(max(0, x), max(0, width - tw)), min(max(0, y), max(0, height - h))
        return (x, y, x + tw, y + h)
    spots = [clamp(x0, top) for top in (y0 - h, y0, y1)]
    spots += [clamp(x, y) for x in [x0] + list(range(0, max(1, width - tw + 1),
                                                     max(1, tw // 2)))
              for y in range(0, max(1, height - h + 1), max(1, h // 2))]
    return next((r for r in spots if not _overlaps(r, rects)), spots[0])


def label_boxes(image_shape, detections, classes):
    """Where each label goes: ``[(index, text, (x0, y0, x1, y1)), ...]``, best score first.

    A label sits above its box's top-left corner, or else inside the box's top, or below
    the box, or at the first free spot (see :func:`_free_spot`); labels are placed in
    order of score, so the confident ones get the natural spots. Only when the image has
    no free spot left does a label overlap another.
    """
    height, width = image_shape[:2]
    placed, rects = [], []
    for i in np.argsort(-detections.scores, kind='stable'):
        cid = int(detections.class_ids[i])
        name = classes[cid] if 0 <= cid < len(classes) else 'class {}'.format(cid)
        text = _label(name, detections.scores[i])
        (tw, th), base = cv2.getTextSize(text, _FONT, _SCALE, 1)
        h = th + base
        x0, y0, _, y1 = (int(round(v)) for v in detections.boxes[i])
        rect = _free_spot(rects, x0, y0, y1, tw, h, width, height)
        rects.append(rect)
        placed.append((int(i), text, rect))
    return placed


def draw_detections(image_bgr, detections, classes):
    """A copy of `image_bgr` with each box, its class name and score drawn on it.

    Labels never overlap each other (see :func:`label_boxes`).
    """
    canvas = image_bgr.copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    for box, cid in zip(detections.boxes, detections.class_ids):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), _color(cid), thickness)
    for i, text, (x0, y0, x1, y1) in label_boxes(canvas.shape, detections, classes):
        base = cv2.getTextSize(text, _FONT, _SCALE, 1)[1]
        cv2.rectangle(canvas, (x0, y0), (x1, y1), _color(detections.class_ids[i]), -1)
        cv2.putText(canvas, text, (x0, y1 - base), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
