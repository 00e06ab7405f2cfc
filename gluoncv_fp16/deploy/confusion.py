"""The confusion matrix of a detector at one score threshold, and its per-class scores.

mAP ranks every detection; a user sees the boxes drawn at one threshold and asks which
classes are confused with which, and which objects are missed. At the picture threshold
eval uses (``--thresh``, default half the best score, as demo.py draws), every image's
drawn boxes are matched to its ground-truth boxes regardless of class: the pair of
highest IoU first, each box and object used once, only pairs with IoU >= 0.5 (VOC's
"+1" pixel areas, as the mAP). Then

* a matched pair counts in ``matrix[true class, predicted class]``;
* an object no drawn box matches counts in ``matrix[true class, background]`` (missed);
* a drawn box that matches no object counts in ``matrix[background, predicted class]``
  (a false positive: background, a duplicate, a box too far off).

Rows are the true class, columns the predicted class, the last row and column the
background. Objects marked difficult are left out, and so are drawn boxes whose best
match is a difficult object, as the mAP does. Per class: precision = diagonal / column
sum (of the drawn boxes of that class, the share on an object of that class), recall =
diagonal / row sum, F1 their harmonic mean (NaN where the sum is 0).
"""
import csv
import os

import numpy as np

from .detection_record import iou_plus_one

__all__ = ['confusion_matrix', 'image_confusion', 'class_scores', 'write_confusion_csv',
           'write_scores_csv', 'plot_confusion', 'write_confusion']


def image_confusion(detections, truth, num_classes, iou_thresh=0.5):
    """Add one image to a new ``(C+1, C+1)`` int64 matrix and return it.

    Parameters
    ----------
    detections : list of (class, x0, y0, x1, y1)
        The drawn boxes only (score >= threshold).
    truth : list of (class, difficult, x0, y0, x1, y1)
    num_classes : int
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    background = num_classes
    kept = [t for t in truth if not t[1]]
    hard = np.array([t[2:] for t in truth if t[1]], np.float64).reshape(-1, 4)
    gt_boxes = np.array([t[2:] for t in kept], np.float64).reshape(-1, 4)
    det_boxes = np.array([d[1:] for d in detections], np.float64).reshape(-1, 4)
    ious = np.array([iou_plus_one(box, gt_boxes) if len(kept) else np.zeros(0)
                     for box in det_boxes]).reshape(len(detections), len(kept))
    det_used = np.zeros(len(detections), bool)
    gt_used = np.zeros(len(kept), bool)
    det_index, gt_index = np.nonzero(ious >= iou_thresh)
    for k in np.argsort(-ious[det_index, gt_index], kind='stable'):
        d, g = det_index[k], gt_index[k]
        if not (det_used[d] or gt_used[g]):
            det_used[d] = gt_used[g] = True
            matrix[int(kept[g][0]), int(detections[d][0])] += 1
    for g in np.flatnonzero(~gt_used):
        matrix[int(kept[g][0]), background] += 1
    for d in np.flatnonzero(~det_used):
        on_difficult = len(hard) and (iou_plus_one(det_boxes[d], hard) >= iou_thresh).any()
        if not on_difficult:
            matrix[background, int(detections[d][0])] += 1
    return matrix


def confusion_matrix(record, thresh, iou_thresh=0.5):
    """The ``(C+1, C+1)`` int64 matrix of a :class:`.detection_record.DetectionRecord`
    over all its images, counting detections with score >= `thresh`."""
    num_classes = len(record.classes)
    drawn, truth = {}, {}
    for image, cid, score, *box in record.detections:
        if score >= thresh:
            drawn.setdefault(image, []).append((cid, *box))
    for image, cid, difficult, *box in record.truth:
        truth.setdefault(image, []).append((cid, difficult, *box))
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for image in set(drawn) | set(truth):
        matrix += image_confusion(drawn.get(image, []), truth.get(image, []), num_classes,
                                  iou_thresh)
    return matrix


def class_scores(matrix):
    """``(precision, recall, f1)`` per class (each (C,) float64, NaN where undefined)."""
    matrix = np.asarray(matrix, np.float64)
    hits = np.diag(matrix)[:-1]
    drawn = matrix[:, :-1].sum(axis=0)
    objects = matrix[:-1, :].sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        precision = np.where(drawn > 0, hits / drawn, np.nan)
        recall = np.where(objects > 0, hits / objects, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall),
                      np.where(np.isnan(precision) | np.isnan(recall), np.nan, 0.0))
    return precision, recall, f1


def write_confusion_csv(path, matrix, classes):
    """The matrix with a header row and column of names (``background`` last): rows the
    true class, columns the predicted class."""
    names = list(classes) + ['background']
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['true \\ predicted'] + names)
        for name, row in zip(names, np.asarray(matrix)):
            writer.writerow([name] + [int(v) for v in row])
    return path


def write_scores_csv(path, matrix, classes):
    """One row per class: objects, drawn boxes, correct, precision, recall, f1."""
    matrix = np.asarray(matrix)
    precision, recall, f1 = class_scores(matrix)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['class', 'objects', 'drawn', 'correct', 'precision', 'recall', 'f1'])
        for c, name in enumerate(classes):
            writer.writerow([name, int(matrix[c].sum()), int(matrix[:, c].sum()),
                             int(matrix[c, c])] + [_number(v[c]) for v in (precision, recall,
                                                                            f1)])
    return path


def _number(value):
    return '' if np.isnan(value) else '{:.4f}'.format(value)


def plot_confusion(path, matrix, classes, title):
    """The matrix as a PNG, each row normalised by its objects (counts written in the
    cells), so a row shows where one class's objects went."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    matrix = np.asarray(matrix)
    names = list(classes) + ['background']
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    side = min(12.0, 2.5 + 0.45 * len(names))
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(shares, cmap='Blues', vmin=0, vmax=1)
    if len(names) <= 30:
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                ax.text(col, row, str(count), ha='center', va='center', fontsize=7,
                        color='white' if shares[row, col] > 0.5 else 'black')
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    ax.set(xlabel='predicted', ylabel='true', title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label='share of the row')
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_confusion(record, thresh, out_dir, tag, iou_thresh=0.5):
    """Write ``confusion_<tag>.csv``, ``confusion_<tag>.png`` and ``class_scores_<tag>.csv``
    for `record` at score `thresh`; returns what eval's summary keeps of them."""
    matrix = confusion_matrix(record, thresh, iou_thresh)
    precision, recall, f1 = class_scores(matrix)
    paths = {
        'csv': write_confusion_csv(os.path.join(out_dir, 'confusion_{}.csv'.format(tag)),
                                   matrix, record.classes),
        'scores_csv': write_scores_csv(
            os.path.join(out_dir, 'class_scores_{}.csv'.format(tag)), matrix, record.classes),
        'png': plot_confusion(os.path.join(out_dir, 'confusion_{}.png'.format(tag)), matrix,
                              record.classes, '{} at score >= {:.3f}'.format(tag, thresh)),
    }
    return dict(paths, threshold=float(thresh), iou=float(iou_thresh),
                matrix=matrix.tolist(),
                precision=[None if np.isnan(v) else float(v) for v in precision],
                recall=[None if np.isnan(v) else float(v) for v in recall],
                f1=[None if np.isnan(v) else float(v) for v in f1])
