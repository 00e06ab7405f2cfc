"""Would the demo picture of each validation image be right? A sanity check beside mAP.

mAP rewards ranking over all scores; a user looks at pictures drawn at one threshold.
At that threshold an image is *right* when every drawn box matches a distinct
ground-truth box of its class (IoU >= 0.5, VOC's "+1" pixel areas as in the mAP) and
every ground-truth box that is not 'difficult' is matched. Otherwise each fault is
counted: a *missed* object (a ground-truth box no drawn box of its class matches), a
*wrong class* (a drawn box on another class's object), an *extra* box (any other
unmatched drawn box: background, a duplicate, a box too far off).
"""
import csv

import numpy as np

from .detection_record import iou_plus_one
from .predict import auto_threshold

__all__ = ['PictureCheck', 'check_image', 'check_pictures', 'default_threshold', 'summarise',
           'write_csv']


class PictureCheck:
    """The verdict on one image's picture: counts of missed objects, extra boxes, wrong
    classes (all 0 means right)."""

    def __init__(self, image_id, missed, extra, wrong_class):
        self.image_id = image_id
        self.missed, self.extra, self.wrong_class = int(missed), int(extra), int(wrong_class)

    @property
    def right(self):
        return not (self.missed or self.extra or self.wrong_class)


def check_image(detections, truth, iou_thresh=0.5):
    """``(missed, extra, wrong_class)`` of one picture.

    Parameters
    ----------
    detections : list of (class, score, x0, y0, x1, y1)
        The drawn boxes only (score >= threshold).
    truth : list of (class, difficult, x0, y0, x1, y1)
    """
    gt_boxes = np.array([t[2:] for t in truth], np.float64).reshape(-1, 4)
    gt_class = np.array([t[0] for t in truth], int)
    difficult = np.array([bool(t[1]) for t in truth], bool)
    used = np.zeros(len(truth), bool)
    unmatched = []
    # Highest score first, as the mAP matches; each box takes the best free ground truth
    # of its class, so two boxes never share one object.
    for cid, _, *box in sorted(detections, key=lambda d: -d[1]):
        ious = (iou_plus_one(np.array(box, np.float64), gt_boxes) if len(truth)
                else np.zeros(0))
        free = (gt_class == cid) & ~used & (ious >= iou_thresh)
        if free.any():
            used[np.flatnonzero(free)[np.argmax(ious[free])]] = True
        else:
            unmatched.append((cid, ious))
    wrong = sum(1 for cid, ious in unmatched
                if ((gt_class != cid) & (ious >= iou_thresh)).any())
    missed = int((~used & ~difficult).sum())
    return missed, len(unmatched) - wrong, wrong


def default_threshold(record):
    """The threshold demo.py would pick for these images: half the best score."""
    return auto_threshold([d[2] for d in record.detections])


def check_pictures(record, thresh=None, iou_thresh=0.5):
    """``(threshold, [PictureCheck per image])`` of a :class:`DetectionRecord`.

    `thresh` None: :func:`default_threshold`. Images are in the record's index order.
    """
    if thresh is None:
        thresh = default_threshold(record)
    drawn, truth = {}, {}
    for image, cid, score, *box in record.detections:
        if score >= thresh:
            drawn.setdefault(image, []).append((cid, score, *box))
    for image, cid, difficult, *box in record.truth:
        truth.setdefault(image, []).append((cid, difficult, *box))
    return thresh, [PictureCheck(record.image_id(i),
                                 *check_image(drawn.get(i, []), truth.get(i, []), iou_thresh))
                    for i in sorted(record.scales)]


def summarise(checks):
    """Counts for the report: images, right, with a missed object, extra box, wrong class."""
    return {'images': len(checks), 'right': sum(c.right for c in checks),
            'missed': sum(c.missed > 0 for c in checks),
            'extra': sum(c.extra > 0 for c in checks),
            'wrong_class': sum(c.wrong_class > 0 for c in checks)}


def write_csv(path, checks):
    """One row per image: image_id, right (0/1), missed, extra, wrong_class (counts)."""
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['image_id', 'right', 'missed', 'extra', 'wrong_class'])
        for c in checks:
            writer.writerow([c.image_id, int(c.right), c.missed, c.extra, c.wrong_class])
    return path
