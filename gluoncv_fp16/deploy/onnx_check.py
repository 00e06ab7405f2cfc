"""The export's self-check: ONNX Runtime's detections vs MXNet's on the same images.

Detections are compared as sets per image: an MXNet detection is matched by an ONNX
Runtime detection of the same class whose score and box agree within the tolerances.
The two runtimes sum in different orders, so scores and boxes differ in the last bits
and two kinds of decisions may go either way: a detection whose score sits within the
score tolerance of a cut-off (the valid threshold 0.01, or the lowest score kept when
all ``post_nms`` rows are used), and NMS order swaps: two overlapping candidates of
one class whose scores are within the tolerance are ranked differently and NMS keeps
one or the other (see :func:`_order_swaps`). Only those may go unmatched; they are
counted and printed.

Tolerances (:func:`default_tolerance`), absolute, justified by precision:

A box coordinate may differ by ``box x max(side, |coordinate|)``: relative to the image
side for boxes in the image, relative to the coordinate itself for the huge boxes an
untrained network decodes (``exp(raw) * anchor``), where rounding is relative.

* FP32: both runtimes compute in FP32; measured differences before NMS are ~1e-6 in
  scores and ~3e-4 px in boxes (96 px input). Allowed: 1e-4 in scores, box 1e-3
  (0.42 px at 416).
* FP16: each side rounds every layer's output to FP16 (u = 2^-11) but accumulates
  differently; the FP16-vs-FP32 bound of docs/model_zoo.md, 2 sqrt(L) u ~ 8e-3 for L up
  to 73 layers, bounds the difference of each to the FP32 result, so twice it bounds
  their difference: 1.6e-2 in scores, box 1.6e-2.
"""
import numpy as np
from mxnet import autograd
import mxnet as mx

from .onnx_nms import VALID_THRESH
from .onnx_runtime import load_onnx

__all__ = ['check_export', 'compare_detections', 'default_tolerance', 'CheckResult',
           'synthetic_images']


def default_tolerance(dtype, data_shape):
    """{'score': absolute, 'box': relative, 'side': px} (see module docstring)."""
    if dtype == 'float16':
        return {'score': 1.6e-2, 'box': 1.6e-2, 'side': data_shape}
    return {'score': 1e-4, 'box': 1e-3, 'side': data_shape}


def _box_diff(boxes, box, tolerance):
    """Per row of `boxes`: max |difference| to `box` in units of the allowed difference."""
    if not len(boxes):
        return np.zeros(0)
    scale = tolerance['box'] * np.maximum(tolerance['side'], np.abs(box))
    return (np.abs(boxes - box) / scale).max(axis=1)


class CheckResult:
    """Outcome of the self-check, printable as one line per fact."""

    def __init__(self, providers, images, tolerance):
        self.providers, self.images, self.tolerance = providers, images, tolerance
        self.mxnet = self.matched = self.borderline = self.unmatched = self.onnx = 0
        self.same_rows = True
        self.max_score_diff = self.max_box_diff = 0.0

    @property
    def ok(self):
        return self.unmatched == 0

    def __str__(self):
        tol = self.tolerance
        return ('ONNX Runtime ({}) vs MXNet on {} images: {} vs {} detections, {} matched '
                '(same class, |score diff| <= {:g}, |box diff| <= {:g} x max({}, |coord|)), '
                '{} unmatched at a cut-off or NMS order swap, {} unmatched otherwise; '
                'max |score diff| {:.2e}, max |box diff| {:.2e} px; rows identical in '
                'order: {} -> {}'.format(
                    ','.join(self.providers), self.images, self.onnx, self.mxnet,
                    self.matched, tol['score'], tol['box'], tol['side'], self.borderline,
                    self.unmatched, self.max_score_diff, self.max_box_diff,
                    'yes' if self.same_rows else 'no', 'PASS' if self.ok else 'FAIL'))


def _valid(ids, scores, boxes):
    keep = ids[:, 0] >= 0
    return ids[keep, 0], scores[keep, 0], boxes[keep]


def _cutoff(scores, rows, tol):
    """Scores within `tol` of a cut-off may legitimately be kept by one side only."""
    low = VALID_THRESH
    if len(scores) == rows:  # every row used: the post_nms limit also cut
        low = max(low, float(scores.min()))
    return low + tol


def compare_detections(mx_out, ort_out, tolerance, result, candidates=None):
    """Accumulate into `result` the comparison of one image's (ids, scores, boxes).

    `candidates`: MXNet's pre-NMS (ids (N,), scores (N,), boxes (N, 4)) of the image,
    needed to recognise NMS order swaps (see :func:`_order_swaps`).
    """
    rows = mx_out[0].shape[0]
    result.same_rows &= bool(np.array_equal(mx_out[0], ort_out[0]))
    a, b = _valid(*mx_out), _valid(*ort_out)
    result.mxnet += len(a[0])
    result.onnx += len(b[0])
    used = np.zeros(len(b[0]), dtype=bool)
    lonely = np.zeros(len(a[0]), dtype=bool)
    for i, (cid, score, box) in enumerate(zip(*a)):
        diffs = _box_diff(b[2], box, tolerance)
        fits = (~used) & (b[0] == cid) & (np.abs(b[1] - score) <= tolerance['score']) & \
            (diffs <= 1)
        if fits.any():
            j = int(np.flatnonzero(fits)[np.argmin(diffs[fits])])
            used[j] = True
            result.matched += 1
            result.max_score_diff = max(result.max_score_diff, float(abs(b[1][j] - score)))
            result.max_box_diff = max(result.max_box_diff, float(np.abs(b[2][j] - box).max()))
        else:
            lonely[i] = True
    cut = min(_cutoff(a[1], rows, tolerance['score']), _cutoff(b[1], rows,
                                                                tolerance['score']))
    swapped = _order_swaps([x[lonely] for x in a], [x[~used] for x in b], candidates,
                           tolerance)
    for score, swap in zip(list(a[1][lonely]) + list(b[1][~used]), swapped):
        if swap or score <= cut:
            result.borderline += 1
        else:
            result.unmatched += 1


def _iou(box, boxes):
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    return inter / (area + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - inter)


def _order_swaps(left, right, candidates, tolerance, nms_thresh=0.45, iou_margin=0.05):
    """Which unmatched detections (MXNet's `left`, then ONNX Runtime's `right`) are one
    half of an NMS order swap: an MXNet-only detection A and an ONNX-only detection B of
    the same class, scores within the tolerance, overlapping enough to suppress each
    other (IoU > nms_thresh - iou_margin), and B one of MXNet's own pre-NMS candidates
    (within the tolerances) -- MXNet saw B and suppressed it under A, ONNX Runtime
    ranked the two the other way round."""
    flags = np.zeros(len(left[0]) + len(right[0]), dtype=bool)
    if candidates is None or not len(left[0]) or not len(right[0]):
        return flags
    c_ids, c_scores, c_boxes = candidates
    for j, (cid, score, box) in enumerate(zip(*right)):
        seen = (c_ids == cid) & (np.abs(c_scores - score) <= tolerance['score']) & \
            (_box_diff(c_boxes, box, tolerance) <= 1)
        pair = (~flags[:len(left[0])]) & (left[0] == cid) & \
            (np.abs(left[1] - score) <= tolerance['score']) & \
            (_iou(box, left[2]) > nms_thresh - iou_margin)
        if seen.any() and pair.any():
            flags[int(np.flatnonzero(pair)[0])] = True
            flags[len(left[0]) + j] = True
    return flags


def synthetic_images(data_shape, mean, std, count=4, seed=0):
    """(count, 3, S, S) float32: rendered synthetic scenes, normalised as in training."""
    from ..data.synthetic import render_sample  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    batch = []
    for _ in range(count):
        bgr, _ = render_sample(rng, width=data_shape, height=data_shape)
        rgb = bgr[:, :, ::-1].astype(np.float32) / 255.0
        batch.append(((rgb - np.array(mean, np.float32)) / np.array(std, np.float32))
                     .transpose(2, 0, 1))
    return np.stack(batch).astype(np.float32)




def check_export(path, net, dtype, data_shape, mean, std, images=None, tolerance=None,
                 providers=None):
    """Run `path` with ONNX Runtime and `net` (MXNet, predict mode) on the same images.

    Returns
    -------
    CheckResult
    """
    tolerance = tolerance or default_tolerance(dtype, data_shape)
    images = synthetic_images(data_shape, mean, std) if images is None else images
    detector = load_onnx(path, providers=providers or ['CPUExecutionProvider'])
    x = np.asarray(images, dtype=dtype)
    ort_out = detector(x)
    mx_out = _predict(net, x)
    limits = dict(nms_thresh=net.nms_thresh, nms_topk=net.nms_topk, post_nms=net.post_nms)
    net.set_nms(nms_thresh=0, nms_topk=net.nms_topk, post_nms=net.post_nms)
    try:
        candidates = _predict(net, x)
    finally:
        net.set_nms(**limits)
    result = CheckResult(detector.providers, len(x), tolerance)
    for i in range(len(x)):
        compare_detections([o[i] for o in mx_out], [o[i] for o in ort_out], tolerance, result,
                           candidates=(candidates[0][i, :, 0], candidates[1][i, :, 0],
                                       candidates[2][i]))
    return result


def _predict(net, x):
    with autograd.predict_mode():
        return [a.asnumpy() for a in net(mx.nd.array(x, dtype=x.dtype))]
