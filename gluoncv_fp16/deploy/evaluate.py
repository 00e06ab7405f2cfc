"""Evaluate a trained detector on a validation set, in one or several precisions.

GluonCV's ``eval_yolo.py`` for this product: the model comes from a checkpoint, a plain
``.params`` file, an MXNet export prefix or an ONNX file; the data is any dataset
training accepts. A checkpoint or ``.params`` file is evaluated in every dtype asked
for (same weights; FP16 runs through the CPU half-precision layers on a CPU) while the
data is read once, so FP32 and FP16 see identical batches. Per class: VOC07 AP (the
metric training reports) and its precision-recall curve; for COCO also pycocotools'
twelve numbers. Detections are kept as COCO-format JSON.
"""
import logging
import os

import mxnet as mx
import numpy as np

from ..data.loader import pad_stack
from ..data.transforms import YOLO3FastValTransform
from ..checkpoint import read_source
from ..data.voc_map import class_ap
from .detection_record import DetectionRecord, plot_pr_curve
from .export import export_paths
from .predict import Detector, PredictError, load_detector
from ..errors import EvalError, SourceError

__all__ = ['EvalError', 'load_models', 'model_kind', 'evaluate', 'coco_metrics', 'coco_stats',
           'write_outputs', 'COCO_STAT_NAMES']

logger = logging.getLogger(__name__)

COCO_STAT_NAMES = ('AP', 'AP50', 'AP75', 'AP_small', 'AP_medium', 'AP_large', 'AR1', 'AR10',
                   'AR100', 'AR_small', 'AR_medium', 'AR_large')
_DTYPES = ('float32', 'float16')


class ModelInfo:
    """What evaluation defaults come from: classes, data shape, mean/std, run config, and
    which weights a checkpoint gave (``'ema'`` or ``'training'``)."""

    def __init__(self, classes, data_shape, mean, std, config, weights_kind='training'):
        self.classes, self.data_shape = list(classes), int(data_shape)
        self.mean, self.std, self.config = tuple(mean), tuple(std), dict(config)
        self.weights_kind = weights_kind


def model_kind(model):
    """'onnx', 'export' (MXNet symbol + params prefix) or 'weights' (checkpoint, .params)."""
    if model.endswith('.onnx'):
        return 'onnx'
    if os.path.isfile(export_paths(model)[0]):
        return 'export'
    return 'weights'


def load_models(model, dtypes=None, network=None, classes=None, data_shape=None, ctx=None):
    """``({dtype: Detector}, ModelInfo)`` for `model` in each of `dtypes`.

    A checkpoint or ``.params`` file runs in any dtype (default float32); an export
    runs in its own dtype only.

    Raises
    ------
    EvalError
        Unknown dtype, a dtype an export cannot run in, contradicting names.
    gluoncv_fp16.errors.CheckpointError
        Missing or unreadable weights file.
    """
    bad = [d for d in dtypes or () if d not in _DTYPES]
    if bad:
        raise EvalError("--dtype {!r}: choose from {} (comma-separated, e.g. "
                        "float32,float16)".format(bad[0], ','.join(_DTYPES)))
    ctx = ctx or mx.cpu()
    kind = model_kind(model)
    if kind != 'weights':
        try:
            detector = load_detector(exported=model if kind == 'export' else None,
                                     onnx=model if kind == 'onnx' else None,
                                     data_shape=data_shape, ctx=ctx)
        except PredictError as err:
            raise EvalError(str(err)) from None
        if dtypes and list(dtypes) != [detector.dtype]:
            raise EvalError("'{}' is a {} export; it runs in {} only (drop --dtype, or "
                            "evaluate the checkpoint to compare precisions)".format(
                                model, detector.dtype, detector.dtype))
        info = ModelInfo(detector.classes, detector.data_shape, detector.mean, detector.std,
                         {})
        return {detector.precision: detector}, info
    try:
        source = read_source(model, network, classes)
    except SourceError as err:
        raise EvalError(str(err)) from None
    side = data_shape or source.data_shape
    detectors = {}
    for dtype in dtypes or ['float32']:
        try:
            net = source.build(dtype, ctx)
        except SourceError as err:
            raise EvalError(str(err)) from None
        net.hybridize()
        detectors[dtype] = Detector(net, net.classes, dtype, side, ctx, source.mean,
                                    source.std)
    first = next(iter(detectors.values()))
    return detectors, ModelInfo(first.classes, side, source.mean, source.std, source.config,
                                source.weights_kind)


class _Prepare:
    """Dataset sample -> (normalised (3, S, S) float32, label in input pixels, (sx, sy))."""

    def __init__(self, data_shape, mean, std):
        self.side = data_shape
        self.transform = YOLO3FastValTransform(data_shape, data_shape, mean, std)

    def __call__(self, img, label):
        image, boxes = self.transform.apply(img, label)
        height, width = img.shape[:2]
        return image, boxes, np.array([width / self.side, height / self.side], np.float32)


def _batchify(samples):
    images, labels, scales = zip(*samples)
    return np.stack(images), pad_stack(list(labels)), np.stack(scales)


def _batches(dataset, prepare, batch_size, num_workers):
    loader = mx.gluon.data.DataLoader(dataset.transform(prepare, lazy=True),
                                      batch_size=batch_size, shuffle=False,
                                      last_batch='keep', batchify_fn=_batchify,
                                      num_workers=num_workers)
    return iter(loader)


def evaluate(detectors, dataset, info, batch_size=8, num_workers=0, progress=True,
             image_ids=None, category_ids=None):
    """Run every detector over `dataset` (data read once); ``{dtype: DetectionRecord}``.

    Boxes are clipped to the input as in training's validation.
    """
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    records = {d: DetectionRecord(info.classes, image_ids, category_ids) for d in detectors}
    prepare = _Prepare(info.data_shape, info.mean, info.std)
    index = 0
    with tqdm(total=len(dataset), unit='img', disable=not progress, leave=False) as bar:
        for images, labels, scales in _batches(dataset, prepare, batch_size, num_workers):
            images = np.asarray(images)
            for dtype, detector in detectors.items():
                ids, scores, boxes = detector.predict(images)
                boxes = np.clip(boxes, 0, info.data_shape)
                for k in range(len(images)):
                    records[dtype].add(index + k, ids[k, :, 0], scores[k, :, 0], boxes[k],
                                       np.asarray(labels[k]), scale=np.asarray(scales[k]))
            index += len(images)
            bar.update(len(images))
    return records


def per_class_ap(record):
    """``(aps, curves)``: VOC07 AP per class (NaN without ground truth) and the curves."""
    results = [class_ap(record.detections, record.truth, c) for c in range(len(record.classes))]
    return [r[0] for r in results], [r[1:] for r in results]


def coco_metrics(ground_truth, results, image_ids=None):
    """pycocotools' 12 bbox numbers (:data:`COCO_STAT_NAMES`: AP, AP50, AP75, AP_small,
    AP_medium, AP_large, then the ARs) of `results` against `ground_truth`.

    Any reader that can state its validation set in COCO's format gets COCO's metrics
    through this function, whatever the files were (``coco``, COCO JSON exports).

    Parameters
    ----------
    ground_truth : dict
        COCO-format ground truth: ``images`` (with ``id``), ``annotations`` (``image_id``,
        ``category_id``, ``bbox`` [x, y, w, h], ``area``, ``iscrowd``), ``categories``.
    results : list of dict
        COCO result dicts: ``image_id``, ``category_id``, ``bbox``, ``score``.
    image_ids : sequence of int, optional
        The images evaluated (default: every image of `ground_truth`; images without
        detections count as such).

    Returns
    -------
    dict
        name -> float; all 0 without any detection (pycocotools refuses an empty list).
    """
    import contextlib  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel
    from pycocotools.coco import COCO  # pylint: disable=import-outside-toplevel
    from pycocotools.cocoeval import COCOeval  # pylint: disable=import-outside-toplevel
    if not results:
        return {name: 0.0 for name in COCO_STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):  # its index-building chatter
        truth = COCO()
        truth.dataset = dict(ground_truth)
        truth.dataset.setdefault('info', {})
        truth.createIndex()
        detections = truth.loadRes(list(results))
    evaluator = COCOeval(truth, detections, 'bbox')
    evaluator.params.imgIds = sorted(image_ids if image_ids is not None
                                     else truth.getImgIds())
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    evaluator.summarize()
    return dict(zip(COCO_STAT_NAMES, (float(v) for v in evaluator.stats)))


def coco_stats(record, dataset, json_path, inclusive=True):
    """:func:`coco_metrics` of `record` on a `dataset` that holds a pycocotools ``coco``
    (its ground truth); the detections are written to `json_path` first.

    `inclusive`: boxes as GluonCV's inclusive-end conversion reads COCO (our ``coco``
    reader), see :meth:`.detection_record.DetectionRecord.coco_json`."""
    record.write_json(json_path, inclusive=inclusive)
    return coco_metrics(dataset.coco.dataset, record.coco_json(inclusive=inclusive),
                        sorted(dataset.coco.getImgIds()))


def write_outputs(records, out_dir, classes):
    """Per class one PR-curve PNG (a line per dtype); per dtype the detections JSON.

    Returns ``{dtype: {'aps': [...], 'map': float, 'json': path}}`` and the PNG paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    summary, curves = {}, {}
    for dtype, record in records.items():
        aps, class_curves = per_class_ap(record)
        json_path = os.path.join(out_dir, 'detections_{}.json'.format(dtype))
        if not os.path.isfile(json_path):
            record.write_json(json_path)
        summary[dtype] = {'aps': aps, 'map': float(np.nanmean(aps)) if not np.isnan(aps).all()
                          else float('nan'), 'json': json_path}
        curves[dtype] = (class_curves, aps)
    pngs = []
    for c, name in enumerate(classes):
        lines = {dtype: (curves[dtype][0][c][0], curves[dtype][0][c][1], curves[dtype][1][c])
                 for dtype in records}
        safe = ''.join(ch if ch.isalnum() or ch in '-_' else '_' for ch in name)
        pngs.append(plot_pr_curve(os.path.join(out_dir, 'pr_{}.png'.format(safe)), lines,
                                  name))
    return summary, pngs
