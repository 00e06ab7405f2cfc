"""Anchors fitted to the training boxes: best possible recall, k-means, evolution.

YOLOv3 assigns each box to the anchor whose shape fits it best, and a box can only be
learnt well when some anchor is within a factor of the shape threshold (4 by default,
as YOLOv5's autoanchor) in both width and height. GluonCV's anchors are COCO's for
every dataset; on data with other shapes (thin, tall, tiny or huge boxes at the data
shape) many boxes have no anchor within that factor.

Anchors here are in GluonCV's constructor format: three groups (one per output scale,
smallest first) of three ``(width, height)`` pairs, flattened, in pixels of the network
input -- ``[[w, h, w, h, w, h], [...], [...]]``, the ``anchors`` argument of
``gluoncv.model_zoo.yolo.yolo3.get_yolov3``.

Definitions (for a box of shape ``(w, h)`` and an anchor ``(aw, ah)``):

* fit: ``min(w/aw, aw/w, h/ah, ah/h)``, 1 for equal shapes, toward 0 as they differ;
* a box is *recallable* when its best anchor's fit is above ``1 / threshold``;
* BPR (best possible recall): the share of recallable boxes;
* anchors above threshold: per box, how many anchors fit above ``1 / threshold``, averaged;
* fitness (what the evolution maximises): mean best fit, boxes below the threshold
  counting 0.
"""
import collections
import logging

import numpy as np

__all__ = ['AnchorScore', 'AnchorChoice', 'score_anchors', 'fit_anchors', 'choose_anchors',
           'box_sizes_at', 'as_pairs', 'as_groups', 'BPR_TARGET', 'SHAPE_THRESHOLD',
           'MIN_FIT_SIDE', 'MAX_FIT_BOXES']

logger = logging.getLogger(__name__)

BPR_TARGET = 0.98       # below it, --auto-anchor refits (YOLOv5's rule)
SHAPE_THRESHOLD = 4.0   # largest width or height ratio between a box and a useful anchor
MIN_FIT_SIDE = 2.0      # boxes narrower or lower than this (px) are left out of fitting
MAX_FIT_BOXES = 5000    # fitting uses a seeded sample of this many boxes (~3 s of CPU)
_GROUPS, _PER_GROUP = 3, 3

AnchorScore = collections.namedtuple('AnchorScore', 'bpr above fitness')
AnchorScore.__doc__ = """How well anchors fit boxes: BPR, anchors above threshold, fitness."""

AnchorChoice = collections.namedtuple('AnchorChoice', 'anchors before after fitted')
AnchorChoice.__doc__ = """What :func:`choose_anchors` decided.

anchors : list of list of float
    The anchors to build the network with (GluonCV format).
before : AnchorScore
    Score of the network's anchors.
after : AnchorScore or None
    Score of the fitted anchors (None when none were fitted).
fitted : bool
    Whether `anchors` are the fitted ones.
"""


def as_pairs(anchors):
    """(9, 2) float32 array of ``(width, height)`` from GluonCV-format `anchors`."""
    pairs = np.asarray(anchors, np.float64).reshape(-1, 2)
    return pairs.astype(np.float32)


def as_groups(pairs):
    """GluonCV-format anchors (3 lists of 6 floats) from (9, 2) pairs, sorted by area so
    that the smallest three go to the finest output scale."""
    pairs = np.asarray(pairs, np.float64).reshape(-1, 2)
    pairs = pairs[np.argsort(pairs[:, 0] * pairs[:, 1], kind='stable')]
    per = len(pairs) // _GROUPS
    return [[round(float(v), 2) for v in pairs[g * per:(g + 1) * per].ravel()]
            for g in range(_GROUPS)]


def _fits(sizes, pairs):
    """(N, A) fit of every box to every anchor (see the module docstring)."""
    ratio = sizes[:, None, :] / pairs[None, :, :]
    return np.minimum(ratio, 1.0 / ratio).min(axis=2)


def score_anchors(anchors, sizes, threshold=SHAPE_THRESHOLD):
    """:class:`AnchorScore` of `anchors` on boxes of `sizes`.

    Parameters
    ----------
    anchors : GluonCV-format anchors, or an (A, 2) array of ``(width, height)``
    sizes : numpy.ndarray, (N, 2)
        Box widths and heights in pixels at the data shape; boxes without area are
        ignored.
    threshold : float
        Largest width or height ratio between a box and an anchor that still fits.
    """
    sizes = _positive(sizes)
    if not len(sizes):
        return AnchorScore(1.0, 0.0, 0.0)
    fits = _fits(sizes, as_pairs(anchors).astype(np.float64))
    best = fits.max(axis=1)
    good = best > 1.0 / threshold
    return AnchorScore(float(good.mean()), float((fits > 1.0 / threshold).sum(axis=1).mean()),
                       float((best * good).mean()))


def _positive(sizes):
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    return sizes[(sizes > 0).all(axis=1) & np.isfinite(sizes).all(axis=1)]


def _kmeans(points, count, rng, rounds=30):
    """Lloyd's k-means with k-means++ seeding; returns (count, 2) centres."""
    centres = [points[rng.randint(len(points))]]
    for _ in range(1, count):
        distance = ((points[:, None, :] - np.array(centres)[None]) ** 2).sum(2).min(1)
        total = distance.sum()
        pick = rng.choice(len(points), p=distance / total) if total > 0 else \
            rng.randint(len(points))
        centres.append(points[pick])
    centres = np.array(centres)
    for _ in range(rounds):
        nearest = ((points[:, None, :] - centres[None]) ** 2).sum(2).argmin(1)
        moved = np.array([points[nearest == k].mean(0) if (nearest == k).any() else centres[k]
                          for k in range(count)])
        if np.allclose(moved, centres):
            break
        centres = moved
    return centres


def fit_anchors(sizes, threshold=SHAPE_THRESHOLD, generations=1000, seed=0):
    """Nine anchors fitted to box `sizes`: k-means, then a seeded evolution.

    k-means runs on the shapes scaled by their standard deviation (so width and height
    weigh alike); the evolution then mutates all nine by random factors and keeps a
    mutation only when it raises the fitness. Both use at most :data:`MAX_FIT_BOXES`
    boxes (a seeded sample; the cost grows with boxes x generations). Deterministic for
    a given `seed`.

    Parameters
    ----------
    sizes : numpy.ndarray, (N, 2)
        Box widths and heights in pixels at the data shape.
    threshold : float
    generations : int
        Mutations tried (0: k-means only).
    seed : int

    Returns
    -------
    list of list of float or None
        GluonCV-format anchors, or None when fewer than nine distinct box shapes of at
        least 2 px are available.
    """
    sizes = _positive(sizes)
    usable = sizes[(sizes >= MIN_FIT_SIDE).all(axis=1)]
    count = _GROUPS * _PER_GROUP
    if len(np.unique(usable, axis=0)) < count:
        return None
    rng = np.random.RandomState(seed)
    if len(usable) > MAX_FIT_BOXES:
        usable = usable[rng.choice(len(usable), MAX_FIT_BOXES, replace=False)]
    scale = usable.std(axis=0)
    scale[scale == 0] = 1.0
    pairs = _kmeans(usable / scale, count, rng) * scale
    best = score_anchors(pairs, usable, threshold).fitness
    for _ in range(generations):
        mutate = rng.random_sample(pairs.shape) < 0.9
        factor = np.where(mutate, rng.randn(*pairs.shape) * 0.1 + 1.0, 1.0).clip(0.3, 3.0)
        trial = np.maximum(pairs * factor, MIN_FIT_SIDE)
        fitness = score_anchors(trial, usable, threshold).fitness
        if fitness > best:
            pairs, best = trial, fitness
    return as_groups(pairs)


def choose_anchors(anchors, sizes, refit, threshold=SHAPE_THRESHOLD, seed=0,
                   generations=1000):
    """Keep `anchors`, or replace them by fitted ones that score a higher BPR.

    Anchors are fitted only when `refit` is true and the BPR of `anchors` is below
    :data:`BPR_TARGET`; the fitted ones are used only when their BPR is higher (ties
    broken by fitness).

    Parameters
    ----------
    anchors : list of list of float
        The network's anchors, GluonCV format.
    sizes : numpy.ndarray, (N, 2)
        Box widths and heights in pixels at the data shape.
    refit : bool
        Whether fitting is allowed (``--auto-anchor``).
    threshold, seed, generations
        As :func:`fit_anchors`.

    Returns
    -------
    AnchorChoice
    """
    before = score_anchors(anchors, sizes, threshold)
    if not refit or before.bpr >= BPR_TARGET:
        return AnchorChoice(_plain(anchors), before, None, False)
    fitted = fit_anchors(sizes, threshold, generations=generations, seed=seed)
    if fitted is None:
        return AnchorChoice(_plain(anchors), before, None, False)
    after = score_anchors(fitted, sizes, threshold)
    better = (after.bpr, after.fitness) > (before.bpr, before.fitness)
    return AnchorChoice(fitted if better else _plain(anchors), before, after, better)


def _plain(anchors):
    return [[float(v) for v in group] for group in anchors]


def box_sizes_at(records, data_shape):
    """(N, 2) box widths and heights in pixels at the data shape, as the transforms resize
    (each side on its own), from :class:`gluoncv_fp16.data.report.Record` s; images of
    unknown size are left out."""
    rows = []
    for record in records:
        if not record.width or not record.height or not len(record.boxes):
            continue
        boxes = np.asarray(record.boxes, np.float64).reshape(-1, 4)
        scale = np.array([data_shape / record.width, data_shape / record.height])
        rows.append((boxes[:, 2:] - boxes[:, :2]) * scale)
    return np.concatenate(rows) if rows else np.zeros((0, 2))
