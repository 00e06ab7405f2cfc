"""Validation: VOC07 mAP (VOC, custom, synthetic) or COCO mAP (pycocotools)."""
import logging

from mxnet import autograd, gluon

from ..data import datasets  # noqa: F401  (importing it registers every kind)
from ..data.registry import dataset_kind
from .features import feature
from .loop import HookBase

__all__ = ['make_metric', 'evaluate', 'EvalHook']

logger = logging.getLogger(__name__)


def make_metric(dataset_name, val_dataset, classes, data_shape, save_prefix):
    """The metric GluonCV uses for this dataset: COCO's for a set read as GluonCV reads
    COCO (the registry's ``gluoncv_coco``), else VOC07 mAP."""
    if dataset_kind(dataset_name).gluoncv_coco:
        from gluoncv.utils.metrics.coco_detection import COCODetectionMetric
        return COCODetectionMetric(val_dataset, save_prefix + '_eval', cleanup=True,
                                   data_shape=(data_shape, data_shape))
    from ..data.voc_map import VOC07MApMetric
    return VOC07MApMetric(iou_thresh=0.5, class_names=list(classes))


def evaluate(net, val_loader, contexts, metric, cast_input=lambda x: x):
    """Run `net` over `val_loader` and return ``(names, values)`` of `metric`.

    The network is re-hybridized before and after: a hybridized YOLOV3 caches one call
    signature, and inference (`net(x)`) differs from training (`net(x, gt, *targets)`).
    """
    metric.reset()
    net.hybridize()
    try:
        with autograd.predict_mode():
            for image, label in val_loader:
                images = gluon.utils.split_and_load(image, contexts, even_split=False)
                labels = gluon.utils.split_and_load(label, contexts, even_split=False)
                _update_metric(metric, net, images, labels, cast_input)
    finally:
        net.hybridize()
    return metric.get()


def _update_metric(metric, net, images, labels, cast_input):
    det_boxes, det_ids, det_scores = [], [], []
    gt_boxes, gt_ids, gt_difficults = [], [], []
    for x, y in zip(images, labels):
        ids, scores, boxes = net(cast_input(x))
        det_ids.append(ids)
        det_scores.append(scores)
        det_boxes.append(boxes.clip(0, x.shape[2]))
        gt_ids.append(y.slice_axis(axis=-1, begin=4, end=5))
        gt_boxes.append(y.slice_axis(axis=-1, begin=0, end=4))
        gt_difficults.append(y.slice_axis(axis=-1, begin=5, end=6) if y.shape[-1] > 5 else None)
    metric.update(det_boxes, det_ids, det_scores, gt_boxes, gt_ids, gt_difficults)


@feature('eval', chief_only=True)
class EvalHook(HookBase):
    """End-of-epoch validation: every `interval` epochs, after the last one, and when
    training stops early. Puts ``map`` (NaN when not due) and ``AP/<class>`` into the
    epoch's record; the network holds the evaluation weights (e.g. EMA) meanwhile.

    The feature ``eval``, always on, on the chief only (the validation set is measured
    once; other workers learn of its outcome through the step vote)."""

    def __init__(self, val_loader, metric, interval, last_epoch):
        self.val_loader = val_loader
        self.metric = metric
        self.interval = interval
        self.last_epoch = last_epoch

    @classmethod
    def from_config(cls, cfg, context):
        metric = make_metric(cfg.dataset, context.val_set, context.classes, cfg.data_shape,
                             cfg.run_prefix)
        return cls(context.val_loader, metric, cfg.val_interval, cfg.epochs)

    def end_of_epoch(self, loop):
        scores = self.evaluate(loop) if self.due(loop) else {'map': float('nan')}
        for name, value in scores.items():
            loop.record.put_scalar(name, value)

    def due(self, loop):
        return (loop.epoch + 1) % self.interval == 0 or loop.epoch + 1 >= self.last_epoch \
            or loop.stop_requested

    def evaluate(self, loop):
        """``{'map': ..., 'AP/<class>': ...}`` of the evaluation weights."""
        with loop.evaluation_weights():
            names, values = evaluate(loop.net, self.val_loader, loop.contexts, self.metric,
                                     loop.cast_input)
        names, values = _as_list(names), _as_list(values)
        scores = {'AP/' + str(n).strip(): _number(v) for n, v in zip(names[:-1], values[:-1])}
        scores = {k: v for k, v in scores.items() if v is not None}
        scores['map'] = float(values[-1])
        return scores


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):  # COCO's metric reports a text table among its values
        return None
