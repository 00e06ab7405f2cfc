"""Validation: VOC07 mAP (VOC, custom, synthetic) or COCO mAP (pycocotools)."""
import logging

from mxnet import autograd, gluon

__all__ = ['make_metric', 'evaluate']

logger = logging.getLogger(__name__)


def make_metric(dataset_name, val_dataset, classes, data_shape, save_prefix):
    """The metric GluonCV uses for this dataset."""
    if dataset_name == 'coco':
        from gluoncv.utils.metrics.coco_detection import COCODetectionMetric
        return COCODetectionMetric(val_dataset, save_prefix + '_eval', cleanup=True,
                                   data_shape=(data_shape, data_shape))
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric
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
