"""The VOC07 mAP's sampling error over images: a bootstrap of :mod:`.voc_map`'s mAP.

A validation set is a sample of images; another sample of the same size would give
another mAP. Resampling the images with replacement and recomputing the mAP shows how
far: the spread of the resampled mAPs estimates the standard deviation of the mAP over
image samples, and their 2.5 and 97.5 percentiles a 95% interval.

Each detection is matched to the ground truth once (:func:`.voc_map.match_detections`
matches each image on its own, in score order), so a resample only reweights: an image
drawn k times counts each of its (score, true positive) pairs and its objects k times.
Cumulating the weighted pairs in the full set's score order gives the precision-recall
points of the concatenated resample (k copies of a pair with one score either raise
recall and precision together or leave recall and lower precision, so the 11-point AP
reads the same values), and the AP is :func:`.voc_map.voc07_ap` of them. With every
image drawn once it is the full set's AP exactly.
"""
import math

import numpy as np

from .voc_map import match_detections, nan_mean, voc07_ap

__all__ = ['ImageMatches', 'resample_counts', 'describe_samples', 'bootstrap_map']

DEFAULT_SEED = 0


class ImageMatches:
    """Detections matched to ground truth once; the mAP of any image weighting.

    Parameters
    ----------
    detections : list of tuple
        ``(image, class, score, x0, y0, x1, y1)`` rows, as
        :class:`.voc_map.VOC07MApMetric` and ``DetectionRecord`` keep them.
    truth : list of tuple
        ``(image, class, difficult, x0, y0, x1, y1)`` rows.
    num_classes : int
    num_images : int, optional
        Images of the set, with or without detections and objects (default: one more
        than the highest image index seen). Images without either still count when
        resampling.
    iou_thresh : float
    """

    def __init__(self, detections, truth, num_classes, num_images=None, iou_thresh=0.5):
        seen = [d[0] for d in detections] + [t[0] for t in truth]
        self.num_images = int(num_images if num_images is not None
                              else (max(seen) + 1 if seen else 0))
        self.num_classes = int(num_classes)
        self._classes = []
        for c in range(self.num_classes):
            # class_ap's order: the class's detections by descending score, ties in list order
            dets = sorted((d for d in detections if d[1] == c), key=lambda d: -d[2])
            rows = [t for t in truth if t[1] == c]
            hit, ignore = match_detections(dets, rows, iou_thresh)
            images = np.array([d[0] for d in dets], dtype=np.int64)[~ignore]
            positives = np.bincount(
                np.array([t[0] for t in rows if not t[2]], dtype=np.int64),
                minlength=self.num_images).astype(np.float64)
            self._classes.append((images, hit[~ignore], positives))

    def class_aps(self, counts=None):
        """VOC07 AP per class with image `i` counted ``counts[i]`` times (default once);
        NaN for a class without a counted non-difficult object."""
        counts = (np.ones(self.num_images, dtype=np.float64) if counts is None
                  else np.asarray(counts, dtype=np.float64))
        aps = []
        for images, hit, positives in self._classes:
            total = float(np.dot(counts, positives)) if len(positives) else 0.0
            if total == 0:
                aps.append(float('nan'))
                continue
            weight = counts[images]
            keep = weight > 0
            tp = np.cumsum(np.where(hit, weight, 0.0))[keep]
            fp = np.cumsum(np.where(hit, 0.0, weight))[keep]
            aps.append(voc07_ap(tp / total, tp / (tp + fp)))
        return aps

    def map(self, counts=None):
        """The mAP (mean over classes with objects) of the weighting `counts`."""
        return nan_mean(self.class_aps(counts))


def resample_counts(num_images, resamples, seed=DEFAULT_SEED):
    """``(resamples, num_images)`` int array: how often each image is drawn in each of
    `resamples` draws of `num_images` images with replacement. The same arguments give
    the same draws, so two models evaluated on one set get paired resamples."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(resamples, num_images))
    return np.stack([np.bincount(row, minlength=num_images) for row in draws]) \
        if resamples else np.zeros((0, num_images), dtype=np.int64)


def describe_samples(samples):
    """``{'mean', 'sd', 'ci95'}`` of bootstrap `samples` (finite ones): sample sd
    (ddof=1) and the 2.5/97.5 percentile interval; NaN / None without two of them."""
    values = np.array([v for v in samples if v is not None and math.isfinite(v)])
    if len(values) < 2:
        return {'mean': float(values.mean()) if len(values) else float('nan'),
                'sd': float('nan'), 'ci95': None}
    lo, hi = np.percentile(values, [2.5, 97.5])
    return {'mean': float(values.mean()), 'sd': float(values.std(ddof=1)),
            'ci95': [float(lo), float(hi)]}


def bootstrap_map(detections, truth, num_classes, resamples=200, seed=DEFAULT_SEED,
                  num_images=None, iou_thresh=0.5):
    """The full set's mAP and its bootstrap over images.

    Returns
    -------
    dict
        ``map`` (the full set's, equal to :class:`.voc_map.VOC07MApMetric`'s),
        ``resamples``, ``seed``, ``images``, ``mean``, ``sd``, ``ci95`` (see
        :func:`describe_samples`) and ``samples`` (each resample's mAP, in draw order).
    """
    matches = ImageMatches(detections, truth, num_classes, num_images, iou_thresh)
    samples = [matches.map(c) for c in resample_counts(matches.num_images, resamples, seed)]
    out = {'map': matches.map(), 'resamples': int(resamples), 'seed': int(seed),
           'images': matches.num_images}
    out.update(describe_samples(samples))
    out['samples'] = [float(v) for v in samples]
    return out
