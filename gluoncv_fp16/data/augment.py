"""YOLOv3 training augmentation, split into "draw the decisions" and "apply them".

GluonCV's ``YOLO3DefaultTrainTransform`` interleaves random draws with NDArray image
work. Here :func:`draw_decisions` makes every random choice first (colour jitter,
expansion, IoU-constrained crop, interpolation, flip) and returns a small immutable
:class:`Decisions`; :func:`apply_to_boxes` and :func:`apply_to_image` then apply them
with NumPy/OpenCV. The split is what makes the fast transform testable against GluonCV:
:class:`GluonCVRandomSource` draws from ``np.random`` and ``random`` in exactly
GluonCV's order, so a seeded GluonCV transform and a seeded fast transform make the same
decisions; :class:`GeneratorSource` draws from a per-sample ``np.random.Generator``,
which is what makes training reproducible whatever the number of workers.
"""
import functools
import random
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from .color import ColorJitter, draw_color_jitter

__all__ = ['Decisions', 'GeneratorSource', 'GluonCVRandomSource', 'draw_decisions',
           'draw_crop', 'identity_decisions', 'apply_to_boxes', 'apply_to_image',
           'AUTO_INTERP', 'cv_interp']

# mx.image's interpolation code 9: cubic when enlarging, area when shrinking, else linear.
AUTO_INTERP = 9
_CROP_CONSTRAINTS = ((0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None),
                     (None, 1))


@dataclass(frozen=True)
class Decisions:
    """Every random choice of one training augmentation.

    Attributes
    ----------
    color : ColorJitter
        Colour distortion (an affine map of RGB values).
    expand : (int, int, int, int) or None
        (offset_x, offset_y, canvas_width, canvas_height) of the random zoom-out.
    crop : (int, int, int, int)
        (x, y, width, height) of the crop, in the (expanded) canvas.
    crop_boxes : bool
        Whether boxes are clipped to the crop (False when GluonCV falls back to the
        whole image because no crop kept a box).
    interp : int
        OpenCV interpolation code 0-4, or ``AUTO_INTERP``.
    flip : bool
        Horizontal flip.
    """
    color: ColorJitter
    expand: Optional[Tuple[int, int, int, int]]
    crop: Tuple[int, int, int, int]
    crop_boxes: bool
    interp: int
    flip: bool


class GeneratorSource:
    """All draws from one ``np.random.Generator``; crop trials are drawn in blocks.

    Drawing all trials of a constraint at once and keeping the first that passes gives
    the same distribution as GluonCV's one-at-a-time loop, at a fraction of the cost.
    """

    def __init__(self, rng):
        self.rng = rng
        self.trial_block = None  # None: all trials of all constraints at once

    def uniform(self, low, high):
        # Generator.uniform computes exactly this from one double; calling it costs ~10x
        return low + (high - low) * self.rng.random()

    def integers(self, low, high):
        return int(self.rng.integers(low, high))

    def coin(self, p):
        return bool(self.rng.random() < p)

    aux_uniform = uniform
    aux_integers = integers

    def crop_trials(self, count, width, height, min_scale, max_scale, max_ratio):
        """`count` random crops as int64 arrays (left, top, crop_w, crop_h)."""
        scale = self.rng.uniform(min_scale, max_scale, size=count)
        low = np.maximum(1.0 / max_ratio, scale * scale)
        high = np.minimum(max_ratio, 1.0 / (scale * scale))
        ratio = low + (high - low) * self.rng.random(count)  # = rng.uniform(low, high)
        crop_h = (height * scale / np.sqrt(ratio)).astype(np.int64)
        crop_w = (width * scale * np.sqrt(ratio)).astype(np.int64)
        top = self.rng.integers(0, np.maximum(height - crop_h, 1))
        left = self.rng.integers(0, np.maximum(width - crop_w, 1))
        return left, top, crop_w, crop_h


class GluonCVRandomSource:
    """Draws from the global ``np.random`` and ``random`` in GluonCV's exact order.

    Seed both (``np.random.seed(s); random.seed(s)``) before a call to GluonCV's
    ``YOLO3DefaultTrainTransform`` and again before :func:`draw_decisions` with this
    source, and both make identical decisions. Used by the equivalence tests.
    """
    trial_block = 1

    @staticmethod
    def uniform(low, high):
        return float(np.random.uniform(low, high))

    @staticmethod
    def integers(low, high):
        return int(np.random.randint(low, high))

    @staticmethod
    def coin(p):
        return bool(np.random.choice([False, True], p=[1 - p, p]))

    @staticmethod
    def aux_uniform(low, high):
        return random.uniform(low, high)

    @staticmethod
    def aux_integers(low, high):
        return random.randrange(low, max(high, low + 1))

    def crop_trials(self, count, width, height, min_scale, max_scale, max_ratio):
        """One trial per call (`count` is 1), drawn like GluonCV's loop body."""
        scale = random.uniform(min_scale, max_scale)
        ratio = random.uniform(max(1 / max_ratio, scale * scale),
                               min(max_ratio, 1 / (scale * scale)))
        crop_h = int(height * scale / np.sqrt(ratio))
        crop_w = int(width * scale * np.sqrt(ratio))
        top = random.randrange(max(height - crop_h, 1))
        left = random.randrange(max(width - crop_w, 1))
        return tuple(np.array([v], dtype=np.int64) for v in (left, top, crop_w, crop_h))


def identity_decisions():
    """No augmentation: the whole image, plain resize (auto interpolation), no flip."""
    return Decisions(ColorJitter(), None, (0, 0, 0, 0), False, AUTO_INTERP, False)


def draw_decisions(source, width, height, boxes, max_expand=4.0, max_trial=50):
    """Draw all random choices for an image of `width` x `height` holding `boxes`.

    Parameters
    ----------
    source : GeneratorSource or GluonCVRandomSource
        Where random numbers come from.
    width, height : int
        Source image size.
    boxes : numpy.ndarray, (N, 4+)
        Ground-truth corner boxes in source pixels (the crop keeps at least one).
    max_expand : float
        Largest zoom-out of the random expand (GluonCV: 4, objects shrink up to 4x); 1
        keeps the canvas.
    """
    color = draw_color_jitter(source)
    expand = None
    if source.uniform(0, 1) > 0.5:
        ratio = source.aux_uniform(1, max_expand)
        canvas_h, canvas_w = int(height * ratio), int(width * ratio)
        off_y = source.aux_integers(0, canvas_h - height + 1)
        off_x = source.aux_integers(0, canvas_w - width + 1)
        expand = (off_x, off_y, canvas_w, canvas_h)
        boxes = _translate(boxes, off_x, off_y)
        width, height = canvas_w, canvas_h
    crop, crop_boxes = draw_crop(source, boxes, width, height, max_trial)
    interp = source.integers(0, 5)
    source.coin(0.0)  # GluonCV draws a (never taken) vertical flip first
    flip = source.coin(0.5)
    return Decisions(color, expand, crop, crop_boxes, interp, flip)


def draw_crop(source, boxes, width, height, max_trial=50, min_scale=0.3, max_scale=1.0,
              max_ratio=2.0):
    """SSD-style crop: one candidate per IoU constraint, then a random one keeping a box."""
    trials = (width, height, min_scale, max_scale, max_ratio)
    if len(boxes) == 0:  # GluonCV takes the very first trial crop
        left, top, crop_w, crop_h = source.crop_trials(1, *trials)
        return (int(left[0]), int(top[0]), int(crop_w[0]), int(crop_h[0])), True
    if source.trial_block is None:
        found = _candidates_at_once(source, boxes, max_trial, trials)
    else:
        found = _candidates_one_by_one(source, boxes, max_trial, trials)
    candidates = [(0, 0, width, height)] + found
    while candidates:
        crop = candidates.pop(source.integers(0, len(candidates)))
        if len(_crop_boxes(boxes, crop)):
            return crop, True
    return (0, 0, width, height), False


def _constraint_bounds():
    low = np.array([-np.inf if lo is None else lo for lo, _ in _CROP_CONSTRAINTS])
    high = np.array([np.inf if hi is None else hi for _, hi in _CROP_CONSTRAINTS])
    return low, high


_IOU_LOW, _IOU_HIGH = (bound[:, None] for bound in _constraint_bounds())


def _candidates_at_once(source, boxes, max_trial, trials):
    """All constraints x max_trial trials drawn and scored in one go; first pass kept."""
    num = len(_CROP_CONSTRAINTS)
    left, top, crop_w, crop_h = source.crop_trials(num * max_trial, *trials)
    crops = np.stack([left, top, left + crop_w, top + crop_h], axis=1)
    iou = _iou(boxes[:, :4], crops).reshape(len(boxes), num, max_trial)
    ok = (iou.min(axis=0) >= _IOU_LOW) & (iou.max(axis=0) <= _IOU_HIGH)
    first = ok.argmax(axis=1)  # first passing trial of each constraint, if any
    rows = np.flatnonzero(ok[np.arange(num), first])
    pick = rows * max_trial + first[rows]
    return list(zip(left[pick].tolist(), top[pick].tolist(), crop_w[pick].tolist(),
                    crop_h[pick].tolist()))


def _candidates_one_by_one(source, boxes, max_trial, trials):
    """GluonCV's loop: trials one at a time, stop at the first that passes."""
    found = []
    for low, high in zip(*_constraint_bounds()):
        for _ in range(max_trial):
            left, top, crop_w, crop_h = source.crop_trials(1, *trials)
            crops = np.stack([left, top, left + crop_w, top + crop_h], axis=1)
            iou = _iou(boxes[:, :4], crops)
            if iou.min() >= low and iou.max() <= high:
                found.append((int(left[0]), int(top[0]), int(crop_w[0]), int(crop_h[0])))
                break
    return found


def _iou(boxes, crops):
    """IoU matrix (N, T) between corner boxes and crops, float64."""
    inter_w = (np.minimum(boxes[:, 2, None], crops[:, 2])
               - np.maximum(boxes[:, 0, None], crops[:, 0]))
    inter_h = (np.minimum(boxes[:, 3, None], crops[:, 3])
               - np.maximum(boxes[:, 1, None], crops[:, 1]))
    inter = np.maximum(inter_w, 0) * np.maximum(inter_h, 0)
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_c = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
    return inter / (area_b[:, None] + area_c - inter)


def _translate(boxes, dx, dy):
    out = boxes.copy()
    out[:, 0:4:2] += dx
    out[:, 1:4:2] += dy
    return out


def _crop_boxes(boxes, crop):
    """Boxes clipped to `crop` and shifted into it; boxes whose centre is outside dropped."""
    left, top, w, h = crop
    lo = np.array((left, top))
    hi = np.array((left + w, top + h))
    centers = (boxes[:, :2] + boxes[:, 2:4]) / 2
    inside = ((lo <= centers) & (centers < hi)).all(axis=1)
    out = boxes.copy()
    out[:, :2] = np.maximum(out[:, :2], lo) - lo
    out[:, 2:4] = np.minimum(out[:, 2:4], hi) - lo
    return out[inside & (out[:, :2] < out[:, 2:4]).all(axis=1)]


def apply_to_boxes(boxes, decisions, src_size, out_size):
    """Boxes (N, 4+) in source pixels -> boxes (M, 4+) float64 in output pixels.

    `src_size` and `out_size` are (width, height). Extra columns (class, difficult,
    mixup weight) ride along unchanged; boxes the crop removes are dropped.
    """
    width, height = src_size
    if decisions.expand is not None:
        boxes = _translate(boxes, decisions.expand[0], decisions.expand[1])
    crop = _crop_window(decisions, width, height)
    if decisions.crop_boxes:
        boxes = _crop_boxes(boxes, crop)
    out = boxes.astype(np.float64)
    out[:, 0:4:2] *= out_size[0] / crop[2]
    out[:, 1:4:2] *= out_size[1] / crop[3]
    if decisions.flip:
        out[:, 0:4:2] = out_size[0] - out[:, 2::-2]
    return out


def _crop_window(decisions, width, height):
    if decisions.crop[2] > 0:
        return decisions.crop
    return (0, 0) + ((width, height) if decisions.expand is None else decisions.expand[2:])


def cv_interp(code, src_hw, dst_hw):
    """OpenCV interpolation flag for mx.image code `code` (0-4, or AUTO_INTERP)."""
    if code != AUTO_INTERP:
        return code
    if dst_hw[0] > src_hw[0] and dst_hw[1] > src_hw[1]:
        return cv2.INTER_CUBIC
    if dst_hw[0] < src_hw[0] and dst_hw[1] < src_hw[1]:
        return cv2.INTER_AREA
    return cv2.INTER_LINEAR


def apply_to_image(img, decisions, out_size, mean, std):
    """Source image (H, W, 3) -> augmented, normalised image (3, out_h, out_w) float32.

    Equals GluonCV's colour distort -> expand -> crop -> resize -> flip -> to_tensor ->
    normalize, reordered for speed: colour map and normalisation are both affine per
    pixel, so they are fused into one ``cv2.transform`` applied only to the source
    pixels inside the crop (resizing commutes with affine maps, since interpolation
    weights sum to one). The expand canvas' fill, ``mean * 255``, normalises to 0, so
    only the part of the canvas that can reach the output is built, as zeros around
    the image (see :func:`_kept_extent`). Nothing is clipped, as in GluonCV.
    """
    height, width = img.shape[:2]
    x0, y0, crop_w, crop_h = _crop_window(decisions, width, height)
    off_x, off_y = decisions.expand[:2] if decisions.expand is not None else (0, 0)
    # the part of the source image that falls inside the crop, in source coordinates
    sx0, sy0 = max(x0 - off_x, 0), max(y0 - off_y, 0)
    sx1 = max(min(x0 + crop_w - off_x, width), sx0)
    sy1 = max(min(y0 + crop_h - off_y, height), sy0)
    out_w, out_h = out_size
    interp = cv_interp(decisions.interp, (crop_h, crop_w), (out_h, out_w))
    if sx1 == sx0 or sy1 == sy0:  # the crop holds only fill
        return np.zeros((3, out_h, out_w), np.float32)
    inner = img[sy0:sy1, sx0:sx1]
    top, left = sy0 + off_y - y0, sx0 + off_x - x0
    # Only the fill after the image can be cut away exactly, so an axis is mirrored
    # when the fill before the image is the larger part and the interpolation is
    # mirror-symmetric; the output is mirrored back.
    mirror = _mirror_symmetric(interp, crop_w / out_w, crop_h / out_h)
    flip_y = mirror and 2 * top + inner.shape[0] > crop_h
    flip_x = mirror and 2 * left + inner.shape[1] > crop_w
    if flip_y:
        top = crop_h - top - inner.shape[0]
    if flip_x:
        left = crop_w - left - inner.shape[1]
    canvas = _canvas(inner, top, left, (_kept_extent(top + inner.shape[0], crop_h, out_h),
                                        _kept_extent(left + inner.shape[1], crop_w, out_w)),
                     _flip_code(flip_y, flip_x), _fused_affine(decisions.color, mean, std))
    if canvas.shape[:2] == (crop_h, crop_w):
        part = cv2.resize(canvas, out_size, interpolation=interp)
    else:  # the full canvas' scale factors, so every output keeps its sampling points
        part = cv2.resize(canvas, (0, 0), fx=out_w / crop_w, fy=out_h / crop_h,
                          interpolation=interp)
    return _to_chw(part, out_size, flip_y, flip_x != decisions.flip)


def _mirror_symmetric(interp, scale_x, scale_y):
    """Whether OpenCV's resize of a mirrored image is the mirrored resize (to rounding).

    True for linear and cubic (samples at ``(i + 0.5) * scale - 0.5``, well-conditioned
    weights) and for area when shrinking both axes (cells ``[i, i + 1) * scale``):
    measured <= 4e-6 on normalised images. Not nearest and enlarging area (they sample
    from ``i * scale``), nor Lanczos (OpenCV's weights near a whole pixel lose ~1e-3
    to cancellation, so mirrored weights differ by up to 6e-4).
    """
    if interp == cv2.INTER_AREA:
        return scale_x >= 1 and scale_y >= 1
    return interp in (cv2.INTER_LINEAR, cv2.INTER_CUBIC)


def _flip_code(flip_y, flip_x):
    """cv2.flip code, or None for no flip."""
    if flip_y:
        return -1 if flip_x else 0
    return 1 if flip_x else None


def _kept_extent(end, full, out):
    """Canvas length to keep along one axis so that resizing gives the same first outputs.

    The image ends at `end` in a zero-filled canvas of length `full` resized to `out`.
    OpenCV's output ``i`` reads the source around ``(i + 0.5) * scale - 0.5`` (at most
    4 pixels either side, or one area cell from ``i * scale``), so outputs whose
    footprint starts after `end` are 0. Keeping ``end + 6 + 2 * scale`` pixels and
    resizing with the full canvas' scale gives all other outputs with footprints
    inside the kept canvas or on its zero last pixel, which OpenCV's border
    replication reads in place of the cut fill. Cutting fill *before* the image is not
    exact: it would shift every sampling point by a fraction of a pixel.
    """
    return min(full, end + 6 + 2 * -(-full // out))


def _canvas(inner, top, left, size, flip, affine):
    """Zero float32 canvas of `size` (H, W) with the colour-mapped `inner` at (top, left).

    `inner` is mirrored first by cv2.flip code `flip` (None: not at all).
    """
    if flip is not None:
        inner = cv2.flip(inner, flip)
    inner = np.ascontiguousarray(inner, dtype=np.float32)  # may be the caller's image
    height, width = inner.shape[:2]
    if (top, left, height, width) == (0, 0) + tuple(size):
        return cv2.transform(inner, affine)
    canvas = np.zeros(size + (3,), np.float32)
    window = canvas[top:top + height, left:left + width]
    # a contiguous source is transformed ~2x faster than a window of the canvas
    _write_into(cv2.transform(inner, affine, dst=window), window)
    return canvas


def _write_into(result, target):
    """Copy an OpenCV result into `target` unless OpenCV already wrote it there."""
    if result.ctypes.data != target.ctypes.data:  # the binding had to allocate
        target[...] = result.reshape(target.shape)


def _to_chw(part, out_size, flip_y, flip_x):
    """HWC resized canvas -> (3, out_h, out_w) output, mirrored back; zeros beyond it."""
    out_w, out_h = out_size
    rows, cols = min(part.shape[0], out_h), min(part.shape[1], out_w)
    part = part[:rows, :cols]
    code = _flip_code(flip_y, flip_x)
    if code is not None:
        part = cv2.flip(part, code)
    if (rows, cols) == (out_h, out_w):
        out = np.empty((3, out_h, out_w), np.float32)
    else:
        out = np.zeros((3, out_h, out_w), np.float32)
    row0 = out_h - rows if flip_y else 0
    col0 = out_w - cols if flip_x else 0
    planes = out[:, row0:row0 + rows, col0:col0 + cols]
    for plane, result in zip(planes, cv2.split(part, list(planes))):
        _write_into(result, plane)
    return out


def _fused_affine(color, mean, std):
    """3x4 float32 matrix: colour distortion, then ``(x / 255 - mean) / std``."""
    mat, off = color.affine()
    scale, shift = _normalisation(tuple(mean), tuple(std))
    out = np.empty((3, 4), np.float32)
    out[:, :3] = scale[:, None] * mat
    out[:, 3] = scale * off - shift
    return out


@functools.lru_cache(maxsize=8)
def _normalisation(mean, std):
    """``(x / 255 - mean) / std`` as ``scale * x - shift``, float64."""
    std = np.asarray(std, dtype=np.float64)
    return 1.0 / (255.0 * std), np.asarray(mean, dtype=np.float64) / std
