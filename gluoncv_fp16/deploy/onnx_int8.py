"""Static INT8 ONNX export: calibrated on the model's own images, checked against FP32.

``export_int8(checkpoint, prefix)`` writes ``PREFIX.onnx`` (the FP32 export of
:mod:`.onnx_export`, checked against MXNet) and ``PREFIX-int8.onnx``: the same graph
quantized statically with ONNX Runtime's calibrator and ``QDQQuantizer``, with the same input, outputs and metadata
(plus ``precision: int8``), so eval, demo and the benchmark run it like any export.

What is quantized, and why (measured on the synthetic model and untrained darknet53 /
mobilenet1.0, see docs/results.md):

* The FP32 graph is first pre-processed (``quant_pre_process``: BatchNorm folded into
  the convolutions), then every ``Conv`` is quantized, per output channel, weights
  int8 (symmetric), activations uint8 -- except the three prediction convolutions
  (``yolooutputv3*``). Quantizing those as well makes every top score collapse to 0.5
  or 0.25 (the sigmoid of a few coarse logit levels) and changes classes. The decode (exp, anchors, sigmoid)
  and the NMS read only the prediction convolutions' outputs, so they stay FP32 too.
* Format QDQ (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into
  integer kernels when it loads the model). The QOperator format ran darknet53 at
  416 px 4-5x slower than FP32 here, QDQ 0.35-0.5x (ONNX Runtime also fuses the QDQ
  pairs around LeakyReLU into QLinearLeakyRelu). Quantizing Add/Concat/LeakyReLU/Mul
  too cost the synthetic model 0.08-0.12 mAP.
* ``minmax`` averages each image's min/max (ONNX Runtime's moving average): it was the
  steadiest over calibration sets of 64-256 images; the global min/max, entropy and
  percentile lost 0.03-0.08 mAP on some of them.

Calibration images are drawn from the checkpoint's own training split (evenly spaced,
deterministic), preprocessed exactly as evaluation does (``YOLO3FastValTransform``
with the recorded data shape, mean and std), or read from ``calib_dir``. The check uses
held-back images: the validation split, or with ``calib_dir`` and no readable dataset
the last quarter of the folder's images.

The check's tolerance (:data:`AGREEMENT`): INT8 cannot match FP32 to the last bits,
so the check compares what a user sees. The boxes drawn at the demo's threshold (half
the best FP32 score over the held-back images) must be found by INT8: same class,
IoU >= 0.5 (VOC's match criterion) and |score difference| <= 0.1; and INT8 must not
draw boxes FP32 does not have. At least 60% of FP32's drawn boxes must be found and
at most 20% extra may appear: the synthetic model, whose INT8 mAP is within 0.01 of FP32,
finds 9-10 of 13 with 1 extra; heads broken by quantization found 0-4 of 13. The mAP
difference over a whole validation set is what eval reports.
"""
import glob
import logging
import os
import tempfile

import numpy as np

from ..checkpoint import read_source
from ..errors import ExportError, SourceError
from .onnx_runtime import load_onnx
from .predict import PredictError, auto_threshold, read_image

__all__ = ['export_int8', 'quantize_onnx', 'calibration_images', 'validate_int8',
           'Int8Check', 'CALIB_METHODS', 'DEFAULT_CALIB', 'AGREEMENT', 'int8_path']

logger = logging.getLogger(__name__)

CALIB_METHODS = ('minmax', 'entropy', 'percentile')
DEFAULT_CALIB = 128
HELD_BACK = 16
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
AGREEMENT = dict(iou=0.5, score=0.1, found=0.6, extra=0.2)
PREDICTION_LAYER = 'yolooutputv3'
QUANTIZED_OPS = ('Conv',)  # GluonCV's name of the output layers' scope


def int8_path(prefix):
    """``PREFIX-int8.onnx``: where :func:`export_int8` writes the INT8 model."""
    return prefix + '-int8.onnx'


def validate_int8(dtype, calib, calib_dir, calib_method):
    """Raise ExportError for INT8 settings that cannot work (before anything is written)."""
    if dtype != 'float32':
        raise ExportError("--int8 quantizes the FP32 graph; drop --dtype {} (an INT8 export "
                          "takes float32 input and computes in int8)".format(dtype))
    if not isinstance(calib, int) or isinstance(calib, bool) or calib < 1:
        raise ExportError("--calib must be a positive number of calibration images, got "
                          "{!r}".format(calib))
    if calib_method not in CALIB_METHODS:
        raise ExportError("--calib-method must be one of {}, got {!r}".format(
            ', '.join(CALIB_METHODS), calib_method))
    if calib_dir is not None and not os.path.isdir(calib_dir):
        raise ExportError("--calib-dir '{}' is not a folder; give a folder of JPEG/PNG "
                          "images like the ones the model will see".format(calib_dir))


def _prepare(data_shape, mean, std):
    from ..data.transforms import YOLO3FastValTransform  # pylint: disable=import-outside-toplevel
    transform = YOLO3FastValTransform(data_shape, data_shape, mean, std)
    empty = np.zeros((0, 5), np.float32)

    def prepare(image):
        return transform.apply(image, empty)[0]
    return prepare


def _spread(count, total):
    """`count` evenly spaced indices of range(total) (all of them when count >= total)."""
    if count >= total:
        return list(range(total))
    return sorted(set(np.linspace(0, total - 1, count).round().astype(int).tolist()))


def _dataset_splits(source):
    """(train, val) of the checkpoint's recorded dataset, or (None, reason)."""
    from ..data.datasets import build_datasets  # pylint: disable=import-outside-toplevel
    name = source.config.get('dataset')
    if not name:
        return None, "'{}' records no dataset".format(source.path)
    wanted = source.classes if name in ('custom', 'rec', 'synthetic') else None
    try:
        train, val, found = build_datasets(name, root=source.config.get('dataset_root'),
                                           classes=wanted)
    except (ValueError, OSError) as err:
        return None, "its dataset '{}' cannot be read ({})".format(name, err)
    if source.classes and list(found) != list(source.classes):
        return None, "its dataset '{}' has other classes than the model".format(name)
    return (train, val), None


def _folder_images(calib_dir):
    files = sorted(f for f in glob.glob(os.path.join(calib_dir, '*'))
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ExportError("no calibration images: --calib-dir '{}' has no {} files".format(
            calib_dir, '/'.join(s[1:] for s in IMAGE_SUFFIXES)))
    return files


def calibration_images(source, count, data_shape, calib_dir=None, held_back=HELD_BACK):
    """``(calibration (N, 3, S, S), held_back (M, 3, S, S), where)`` float32 images.

    Parameters
    ----------
    source : ModelSource
        Its recorded dataset, mean and std are used.
    count : int
        N wanted; fewer when the split or folder has fewer.
    data_shape : int
        S.
    calib_dir : str, optional
        A folder of images to calibrate on instead of the training split.
    held_back : int
        M: images for the check, never used for calibration.

    Raises
    ------
    ExportError
        No calibration images (no dataset recorded or readable and no `calib_dir`, an
        empty folder, a folder of one image and no dataset to check on).
    """
    prepare = _prepare(data_shape, source.mean, source.std)
    splits, reason = _dataset_splits(source)
    if calib_dir is None:
        if splits is None:
            raise ExportError("no calibration images: {}; pass --calib-dir DIR with images "
                              "like the ones the model will see".format(reason))
        train, val = splits
        calib = [prepare(train[i][0]) for i in _spread(count, len(train))]
        held = [prepare(val[i][0]) for i in _spread(held_back, len(val))]
        where = "{} training images of '{}'".format(len(calib), source.config['dataset'])
        return np.stack(calib), np.stack(held), where
    files = _folder_images(calib_dir)
    if splits is None:
        if len(files) < 2:
            raise ExportError("no held-back images: --calib-dir '{}' has one image and {}; "
                              "add images to the folder".format(calib_dir, reason))
        keep = max(1, len(files) // 4)
        files, held_files = files[:-keep], files[-keep:]
        held = [_read_rgb(f, prepare) for f in held_files]
    else:
        val = splits[1]
        held = [prepare(val[i][0]) for i in _spread(held_back, len(val))]
    calib = [_read_rgb(files[i], prepare) for i in _spread(count, len(files))]
    return np.stack(calib), np.stack(held), "{} images of '{}'".format(len(calib), calib_dir)


def _read_rgb(path, prepare):
    try:
        return prepare(np.ascontiguousarray(read_image(path)[:, :, ::-1]))
    except PredictError as err:
        raise ExportError('calibration image: {}'.format(err)) from None


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over an image array, one per call."""

    def __init__(self, images):
        self.images, self.index = images, 0

    def get_next(self):
        if self.index >= len(self.images):
            return None
        self.index += 1
        return {'data': self.images[self.index - 1:self.index]}

    def rewind(self):
        self.index = 0


def _name_nodes(model):
    """mx.onnx leaves node names empty; quantization excludes nodes by name."""
    for node in model.graph.node:
        if not node.name:
            node.name = '{}:{}'.format(node.op_type, node.output[0])
    return model


def fp32_convolutions(model, layers=(PREDICTION_LAYER,)):
    """Names of the Conv nodes whose weight name contains one of `layers`."""
    return [n.name for n in model.graph.node
            if n.op_type == 'Conv' and any(layer in n.input[1] for layer in layers)]


def downstream(model, names):
    """Names of the nodes that read, directly or not, an output of the nodes `names`."""
    readers = {}
    for node in model.graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)
    by_name = {n.name: n for n in model.graph.node}
    seen, todo = set(), [by_name[n] for n in names]
    while todo:
        for tensor in todo.pop().output:
            for reader in readers.get(tensor, ()):
                if reader.name not in seen:
                    seen.add(reader.name)
                    todo.append(reader)
    return sorted(seen)


# (ONNX Runtime calibrator, its options) per --calib-method. quantize_static passes no
# histogram size, and with its default (128 bins = 128 quantized bins) the entropy search
# has a single candidate, the full range: entropy equals minmax. Hence our own calibrator.
_CALIBRATORS = dict(
    minmax=('MinMax', dict(moving_average=True)),   # per-image ranges, averaged
    entropy=('Entropy', dict(num_bins=2048, num_quantized_bins=256)),
    percentile=('Percentile', dict(num_bins=2048, percentile=99.999)))


def _calibrate(q, folded, images, method, op_types, folder):
    """Activation ranges of `folded` over `images` with ONNX Runtime's calibrator."""
    from pathlib import Path  # pylint: disable=import-outside-toplevel
    kind, options = _CALIBRATORS[method]
    calibrator = q.create_calibrator(Path(folded), list(op_types),
                                     augmented_model_path=os.path.join(folder, 'augmented.onnx'),
                                     calibrate_method=getattr(q.CalibrationMethod, kind),
                                     extra_options=options)
    calibrator.collect_data(_Reader(images))
    return calibrator.compute_data()


def quantize_onnx(fp32_path, out_path, calibration, method='minmax', keep_layers=(),
                  op_types=QUANTIZED_OPS):
    """Quantize the FP32 export `fp32_path` to `out_path` (see the module docstring).

    Parameters
    ----------
    fp32_path, out_path : str
    calibration : numpy.ndarray
        (N, 3, S, S) float32 normalised images.
    method : {'minmax', 'entropy', 'percentile'}
        How activation ranges are chosen: the mean over images of each image's min/max;
        the range minimising the KL divergence of the quantized histogram; the 99.999th
        percentile of the histogram.
    keep_layers : sequence of str
        Parts of weight names whose convolutions also stay FP32 (the prediction
        convolutions always do).
    op_types : sequence of str
        ONNX operator types to quantize.

    Returns
    -------
    list of str
        The nodes kept in FP32: the prediction convolutions (and `keep_layers`) and
        every node that reads their outputs (decode, NMS).
    """
    from .onnx_export import require_onnx  # pylint: disable=import-outside-toplevel
    onnx = require_onnx()
    from onnxruntime import quantization as q  # pylint: disable=import-outside-toplevel
    from onnxruntime.quantization.shape_inference import quant_pre_process  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
        named, folded = os.path.join(tmp, 'named.onnx'), os.path.join(tmp, 'folded.onnx')
        onnx.save(_name_nodes(onnx.load(fp32_path)), named)
        quant_pre_process(named, folded, skip_symbolic_shape=True)
        model = onnx.load(folded)
        heads = fp32_convolutions(model)
        if len(heads) != 3:
            raise ExportError("expected YOLOv3's three prediction convolutions in '{}', found "
                              "{}; please report this".format(fp32_path, len(heads)))
        keep = fp32_convolutions(model, (PREDICTION_LAYER,) + tuple(keep_layers))
        keep += downstream(model, heads)
        ranges = _calibrate(q, folded, calibration, method, op_types, tmp)
        quantizer = q.QDQQuantizer(model, True, False, q.QuantizationMode.QLinearOps, True,
                                   q.QuantType.QInt8, q.QuantType.QUInt8, ranges, [], keep,
                                   list(op_types), {})
        quantizer.quantize_model()
        model = quantizer.model.model
    props = {p.key: p.value for p in model.metadata_props}
    props.update(precision='int8', calib_method=method, calib_images=str(len(calibration)))
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, out_path)
    return keep


class Int8Check:
    """INT8 vs FP32 on held-back images, as a user sees them (see the module docstring)."""

    def __init__(self, images, threshold, tolerance=None):
        self.images, self.threshold = images, threshold
        self.tolerance = dict(AGREEMENT, **(tolerance or {}))
        self.drawn = self.found = self.int8_drawn = self.extra = 0
        self.score_diffs = []

    @property
    def ok(self):
        tol = self.tolerance
        return (self.found >= tol['found'] * self.drawn and
                self.extra <= tol['extra'] * max(self.drawn, 1))

    def __str__(self):
        tol = self.tolerance
        diff = max(self.score_diffs) if self.score_diffs else 0.0
        line = ('INT8 vs FP32 (ONNX Runtime) on {} held-back images at score >= {:.3f}: {} of '
                '{} FP32 boxes found (same class, IoU >= {:g}, |score diff| <= {:g}; need '
                '>= {:.0%}), {} extra INT8 boxes of {} (allowed <= {:.0%}); max |score diff| '
                '{:.3f} -> {}'.format(self.images, self.threshold, self.found, self.drawn,
                                      tol['iou'], tol['score'], tol['found'], self.extra,
                                      self.int8_drawn, tol['extra'], diff,
                                      'PASS' if self.ok else 'FAIL'))
        if not self.ok:
            line += ('\nINT8 loses too much against FP32 on these images: use the FP32 '
                     'export, or calibrate on more images (--calib) or another method '
                     '(--calib-method)')
        return line


def _iou(box, boxes):
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    return inter / np.maximum(area + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter,
                              1e-12)


def _matches(ids, scores, boxes, other, iou, score_tol=None):
    """Per detection: index of a same-class detection of `other` with IoU >= iou (and
    |score diff| <= score_tol when given), else -1. Greedy in `other`'s order."""
    o_ids, o_scores, o_boxes = other
    used = np.zeros(len(o_ids), bool)
    found = []
    for cid, score, box in zip(ids, scores, boxes):
        fits = (~used) & (o_ids == cid) & (_iou(box, o_boxes) >= iou if len(o_ids) else
                                           np.zeros(0, bool))
        if score_tol is not None:
            fits &= np.abs(o_scores - score) <= score_tol
        j = int(np.flatnonzero(fits)[0]) if fits.any() else -1
        if j >= 0:
            used[j] = True
        found.append(j)
    return found


def compare_int8(fp32_out, int8_out, tolerance=None):
    """An :class:`Int8Check` of (ids, scores, boxes) batches of FP32 and INT8."""
    valid = [o[1][:, :, 0] for o in (fp32_out, int8_out)]
    threshold = max(auto_threshold(valid[0].max(axis=1)), 0.01)
    check = Int8Check(len(valid[0]), threshold, tolerance)
    tol = check.tolerance
    for i in range(len(valid[0])):
        ref, low = ([o[0][i, :, 0], o[1][i, :, 0], o[2][i]] for o in (fp32_out, int8_out))
        ref_valid, low_valid = ref[0] >= 0, low[0] >= 0
        drawn = ref_valid & (ref[1] >= threshold)
        # INT8 rows near the threshold may fall either side: look among all of them
        near = [x[low_valid & (low[1] >= threshold - tol['score'])] for x in low]
        found = _matches(*(x[drawn] for x in ref), near, tol['iou'], tol['score'])
        check.drawn += int(drawn.sum())
        check.found += sum(j >= 0 for j in found)
        check.score_diffs += [abs(float(s) - float(near[1][j]))
                              for s, j in zip(ref[1][drawn], found) if j >= 0]
        int8_drawn = low_valid & (low[1] >= threshold)
        ref_near = [x[ref_valid & (ref[1] >= threshold - tol['score'])] for x in ref]
        back = _matches(*(x[int8_drawn] for x in low), ref_near, tol['iou'])
        check.int8_drawn += int(int8_drawn.sum())
        check.extra += sum(j < 0 for j in back)
    return check


def export_int8(checkpoint, prefix, calib=DEFAULT_CALIB, calib_dir=None, calib_method='minmax',
                data_shape=None, network=None, classes=None, check=True, tolerance=None):
    """Write ``PREFIX.onnx`` (FP32) and ``PREFIX-int8.onnx`` and check both.

    Parameters
    ----------
    checkpoint : str
        A gluoncv_fp16 checkpoint, or a plain ``.params`` file (then `network` and
        `calib_dir`: a plain file records no dataset).
    prefix : str
        Output path without ``.onnx``.
    calib : int
        Calibration images (fewer when the split or folder has fewer).
    calib_dir : str, optional
        Folder of images to calibrate on instead of the training split.
    calib_method : {'minmax', 'entropy', 'percentile'}
    data_shape, network, classes : optional
        As :func:`~.onnx_export.export_onnx`.
    check : bool
        Compare FP32 with MXNet and INT8 with FP32 on held-back images.
    tolerance : dict, optional
        Override entries of :data:`AGREEMENT`.

    Returns
    -------
    (OnnxExport, str, Int8Check or None, str)
        The FP32 export, the INT8 path, the INT8 check and where calibration came from.

    Raises
    ------
    ExportError
        Bad settings or no calibration images, before any file is written.
    """
    from .onnx_export import export_onnx, require_onnx  # pylint: disable=import-outside-toplevel
    validate_int8('float32', calib, calib_dir, calib_method)
    require_onnx()
    try:
        source = read_source(checkpoint, network, classes)
    except SourceError as err:
        raise ExportError(str(err)) from None
    side = data_shape or source.data_shape
    calibration, held, where = calibration_images(source, calib, side, calib_dir)
    fp32 = export_onnx(checkpoint, prefix, 'float32', data_shape=side, network=network,
                       classes=classes, check_images=held if check else False)
    path = int8_path(prefix)
    kept = quantize_onnx(fp32.path, path, calibration, calib_method)
    logger.info('wrote %s (%s; kept FP32: %s)', path, where, ', '.join(kept))
    result = None
    if check:
        reference = load_onnx(fp32.path, providers=['CPUExecutionProvider'])
        quantized = load_onnx(path, providers=['CPUExecutionProvider'])
        result = compare_int8(reference(held), quantized(held), tolerance)
    return fp32, path, result, where
