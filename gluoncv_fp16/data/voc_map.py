"""The one VOC07 mAP: training-time validation and ``gluoncv-fp16-eval`` both use it.

GluonCV's ``VOC07MApMetric`` rule: per class, detections in descending score are matched
greedily to the ground truth of their image at IoU >= 0.5 with "+1" pixel areas
(inclusive pixel ends); a match with a difficult box is neither true nor false positive;
the AP is the 11-point average of the precision-recall curve; a class without
non-difficult ground truth has AP NaN, and the mAP is the mean over the other classes.
``tests/test_eval.py`` checks equality with GluonCV's metric on a trained detector's
output and on random boxes.
"""
import warnings

import numpy as np

__all__ = ['VOC07MApMetric', 'iou_plus_one', 'match_detections', 'pr_curve', 'voc07_ap',
           'class_ap']


class VOC07MApMetric:
    """VOC07 mAP over a dataset, with GluonCV's ``VOC07MApMetric`` interface.

    Parameters
    ----------
    iou_thresh : float
        IoU at which a detection matches a ground-truth box.
    class_names : list of str
        Class names, in class-index order.
    """

    def __init__(self, iou_thresh=0.5, class_names=()):
        self.iou_thresh = float(iou_thresh)
        self.class_names = list(class_names)
        self.name = self.class_names + ['mAP']
        self.reset()

    def reset(self):
        """Forget every image seen."""
        self.detections = []  # (image, class, score, x0, y0, x1, y1)
        self.truth = []        # (image, class, difficult, x0, y0, x1, y1)
        self._images = 0

    def update(self, pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels,
               gt_difficults=None):
        """Add a batch (or a list of per-device batches), as GluonCV's metric takes it.

        Parameters
        ----------
        pred_bboxes : NDArray or numpy.ndarray (B, N, 4), or a list of them
        pred_labels, pred_scores : (B, N) or (B, N, 1); labels < 0 are padding
        gt_bboxes : (B, M, 4)
        gt_labels : (B, M) or (B, M, 1); labels < 0 are padding
        gt_difficults : (B, M) or (B, M, 1), optional; a list entry None means none
        """
        pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels = (
            _batch(a) for a in (pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels))
        if gt_difficults is None or (isinstance(gt_difficults, (list, tuple))
                                     and any(d is None for d in gt_difficults)):
            difficult = np.zeros(gt_labels.shape[:2])
        else:
            difficult = _batch(gt_difficults)
        for k in range(len(pred_bboxes)):
            image = self._images + k
            for cid, score, box in zip(pred_labels[k].reshape(-1), pred_scores[k].reshape(-1),
                                       pred_bboxes[k]):
                if cid >= 0:
                    self.detections.append((image, int(cid), float(score)) +
                                           tuple(map(float, box)))
            for cid, hard, box in zip(gt_labels[k].reshape(-1), difficult[k].reshape(-1),
                                      gt_bboxes[k]):
                if cid >= 0:
                    self.truth.append((image, int(cid), bool(hard > 0)) + tuple(map(float, box)))
        self._images += len(pred_bboxes)

    def class_aps(self):
        """AP per class (NaN without non-difficult ground truth)."""
        return [class_ap(self.detections, self.truth, c, self.iou_thresh)[0]
                for c in range(len(self.class_names))]

    def get(self):
        """``(names, values)``: the class names and 'mAP', their APs and the mean AP."""
        aps = self.class_aps()
        return self.name, aps + [nan_mean(aps)]


def nan_mean(values):
    """Mean of the non-NaN values; NaN when there are none (no warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        return float(np.nanmean(values)) if len(values) else float('nan')


def class_ap(detections, truth, class_index, iou_thresh=0.5):
    """``(ap, recall, precision)`` of one class from (image, class, score|difficult, box)
    rows of every class; AP is NaN when the class has no non-difficult ground truth."""
    dets = sorted((d for d in detections if d[1] == class_index), key=lambda d: -d[2])
    rows = [t for t in truth if t[1] == class_index]
    recall, precision = pr_curve(dets, rows, iou_thresh)
    if not any(not t[2] for t in rows):
        return float('nan'), recall, precision
    return voc07_ap(recall, precision), recall, precision


def _batch(arrays):
    """numpy (B, ...) of an NDArray, an array, or a list of per-device batches."""
    if isinstance(arrays, (list, tuple)):
        return np.concatenate([_batch(a) for a in arrays], axis=0)
    return arrays.asnumpy() if hasattr(arrays, 'asnumpy') else np.asarray(arrays)


def iou_plus_one(box, boxes):
    """VOC IoU with inclusive pixel ends (GluonCV's bbox_iou(offset=1))."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt + 1, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2] + 1)
    return inter / (area + np.prod(boxes[:, 2:] - boxes[:, :2] + 1, axis=1) - inter)


def match_detections(detections, truth, iou_thresh=0.5):
    """Greedy VOC matching of score-sorted `detections` to `truth` (one class).

    Returns
    -------
    hit, ignore : numpy.ndarray of bool
        Per detection: it matched a non-difficult object not matched before (a true
        positive), or it matched a difficult one (neither true nor false positive).
        An object is taken by the first detection of its image in this order, so
        matching the whole set in one score order matches each image as it would alone.
    """
    by_image = {}
    for image, _, difficult, *box in truth:
        by_image.setdefault(image, []).append((difficult, box))
    used = {image: np.zeros(len(rows), dtype=bool) for image, rows in by_image.items()}
    hit = np.zeros(len(detections), dtype=bool)
    ignore = np.zeros(len(detections), dtype=bool)
    for k, (image, _, _, *box) in enumerate(detections):
        rows = by_image.get(image, [])
        if rows:
            ious = iou_plus_one(np.array(box), np.array([b for _, b in rows]))
            best = int(np.argmax(ious))
            if ious[best] >= iou_thresh:
                if rows[best][0]:
                    ignore[k] = True
                elif not used[image][best]:
                    used[image][best] = hit[k] = True
    return hit, ignore


def pr_curve(detections, truth, iou_thresh=0.5):
    """(recall, precision) of score-sorted `detections` against `truth` (one class)."""
    positives = sum(1 for t in truth if not t[2])
    hit, ignore = match_detections(detections, truth, iou_thresh)
    tp = np.cumsum(hit[~ignore], dtype=np.float64)
    fp = np.cumsum(~hit[~ignore], dtype=np.float64)
    recall = tp / positives if positives else np.full(len(tp), np.nan)
    with np.errstate(invalid='ignore', divide='ignore'):
        precision = tp / (tp + fp)
    return recall, precision


def voc07_ap(recall, precision):
    """VOC2007 11-point average precision (NaN without ground truth: `recall` all NaN).

    A class with ground truth and no detection (empty arrays) scores 0; a class with
    neither gets NaN only through :func:`class_ap`, which knows the ground truth."""
    if len(recall) and np.isnan(recall).all():
        return float('nan')
    total = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        above = precision[recall >= t] if len(recall) else np.zeros(0)
        total += (np.nanmax(above) if len(above) else 0.0) / 11.0
    return total
