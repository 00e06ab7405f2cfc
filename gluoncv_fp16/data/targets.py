"""YOLOv3 training targets in vectorised NumPy, and the network geometry they need.

GluonCV builds these targets in its data transform with `YOLOV3PrefetchTargetGenerator`,
a Python loop of per-element NDArray writes, after a full FP32 forward pass of the
network just to learn its anchors and feature-map sizes. Here the geometry is read once
(:class:`YOLOGeometry`, by symbolic shape inference, so an FP16-cast network works and
nothing is computed) and the targets are a handful of array operations
(:func:`yolo3_targets`) that reproduce GluonCV's values, including its float32/float64
rounding, so that the two agree to the last bit on ordinary inputs.

Everything here is FP32 (or FP64 where GluonCV computes in FP64) whatever dtype the
training network has: targets are consumed by the FP32 loss.
"""
import logging
from collections import namedtuple

import mxnet as mx
import numpy as np

__all__ = ['YOLOGeometry', 'yolo3_targets', 'yolo3_assigned', 'empty_targets',
           'ASSIGNED_COLUMNS', 'ROW', 'OBJ', 'CENTER', 'SCALE', 'WEIGHT', 'CLASS']

logger = logging.getLogger(__name__)

_Layer = namedtuple('_Layer', ['anchors', 'height', 'width'])

# Columns of an assigned-target row (:func:`yolo3_assigned`).
ROW, OBJ, CENTER, SCALE, WEIGHT, CLASS = 0, 1, slice(2, 4), slice(4, 6), 6, 7
ASSIGNED_COLUMNS = 8


class YOLOGeometry:
    """Anchors and feature-map sizes of a YOLOv3 network at one input size.

    Parameters
    ----------
    anchors : sequence of array-like, each (A_l, 2)
        Anchor (width, height) in input pixels, one entry per output layer, in the
        network's output order (GluonCV: stride 32 first).
    feature_shapes : sequence of (int, int)
        (height, width) of each output layer's feature map.
    width, height : int
        Network input size in pixels.
    """

    def __init__(self, anchors, feature_shapes, width, height):
        if len(anchors) != len(feature_shapes):
            raise ValueError("got {} anchor groups but {} feature maps; they must match "
                             "one to one".format(len(anchors), len(feature_shapes)))
        self.width, self.height = int(width), int(height)
        self.layers = [_Layer(np.asarray(a, dtype=np.float32).reshape(-1, 2), int(h), int(w))
                       for a, (h, w) in zip(anchors, feature_shapes)]
        self.all_anchors = np.concatenate([layer.anchors for layer in self.layers])
        counts = [len(layer.anchors) for layer in self.layers]
        self._layer_of_anchor = np.repeat(np.arange(len(counts)), counts)
        self._first_anchor = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        cells = [layer.height * layer.width * len(layer.anchors) for layer in self.layers]
        self._first_row = np.concatenate([[0], np.cumsum(cells)[:-1]]).astype(np.int64)
        self.num_rows = int(sum(cells))
        # per-anchor lookups, so that targets need no Python loop over boxes
        per_layer = self._layer_of_anchor
        self._feat_h = np.array([l.height for l in self.layers], np.int64)[per_layer]
        self._feat_w = np.array([l.width for l in self.layers], np.int64)[per_layer]
        self._anchors_in_layer = np.array(counts, np.int64)[per_layer]
        self._local_anchor = np.arange(len(per_layer)) - self._first_anchor[per_layer]
        self._row_base = self._first_row[per_layer] + self._local_anchor

    @classmethod
    def from_net(cls, net, width, height):
        """Read anchors and feature-map sizes from a GluonCV-style YOLOV3 network.

        Works for FP32 and FP16-cast networks alike: anchors are constants (widened to
        FP32, they are small integers so FP16 holds them exactly) and the feature-map
        sizes come from symbolic shape inference, which computes nothing.

        Raises
        ------
        TypeError
            If `net` has no ``yolo_outputs`` (not a YOLOv3 network).
        """
        outputs = getattr(net, 'yolo_outputs', None)
        if outputs is None:
            raise TypeError("expected a YOLOv3 network with `yolo_outputs` (e.g. from "
                            "gluoncv_fp16.model_zoo.get_model('yolo3_..._voc')), got {}"
                            .format(type(net).__name__))
        anchors = [out.anchors.data(out.anchors.list_ctx()[0]).asnumpy().astype(np.float32)
                   for out in outputs]
        return cls(anchors, _feature_shapes(net, outputs, width, height), width, height)

    @property
    def num_layers(self):
        return len(self.layers)

    def match_anchors(self, widths, heights):
        """Index of the best anchor (largest IoU of zero-centred boxes) for each gt box.

        Computed in FP32 in the same order as MXNet's ``box_iou`` so that ties and
        near-ties resolve to the same anchor as GluonCV (first maximum).
        """
        aw, ah = self.all_anchors[:, 0], self.all_anchors[:, 1]
        gw, gh = widths[:, None], heights[:, None]
        inter = np.minimum(aw, gw) * np.minimum(ah, gh)
        union = aw * ah + gw * gh - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        return np.argmax(iou, axis=1)


def _feature_shapes(net, outputs, width, height):
    """(height, width) of each output layer at input (height, width), without computing."""
    sym_out = net(mx.sym.var('data'))
    group = mx.sym.Group(list(sym_out)) if isinstance(sym_out, (list, tuple)) else sym_out
    internals = group.get_internals()
    names = set(internals.list_outputs())
    shapes = []
    for out in outputs:
        name = out.prediction.name + '_fwd_output'
        if name not in names:
            raise TypeError("cannot find the prediction layer '{}' of {} in its symbolic "
                            "graph; is this a GluonCV YOLOv3 network?".format(name, out.name))
        _, out_shapes, _ = internals[name].infer_shape(data=(1, 3, height, width))
        shapes.append(tuple(out_shapes[0][2:4]))
    return shapes


def empty_targets(geometry, num_class):
    """Targets of an image without objects: all zero, class targets -1 (ignore)."""
    rows = geometry.num_rows
    return (np.zeros((rows, 1), np.float32), np.zeros((rows, 2), np.float32),
            np.zeros((rows, 2), np.float32), np.zeros((rows, 2), np.float32),
            np.full((rows, num_class), -1, np.float32))


def _valid_prefix(boxes):
    """GluonCV stops at the first box with a negative coordinate (its padding marker)."""
    invalid = (boxes < 0).any(axis=1)
    return int(invalid.argmax()) if invalid.any() else len(boxes)


def yolo3_targets(geometry, boxes, class_ids, num_class, mixratio=None):
    """Training targets of one image, equal to GluonCV's ``YOLOV3PrefetchTargetGenerator``.

    Each box is assigned to the single anchor (over all layers) whose shape fits it
    best, in the grid cell holding its centre. When two boxes claim the same cell and
    anchor, the later box wins, as in GluonCV.

    Parameters
    ----------
    geometry : YOLOGeometry
        Network geometry at the image's input size.
    boxes : numpy.ndarray, (M, 4)
        Corner boxes in input pixels. Rows from the first one holding a negative
        coordinate on are ignored (padding), as in GluonCV.
    class_ids : numpy.ndarray, (M,)
        Class index of each box.
    num_class : int
        Number of foreground classes.
    mixratio : numpy.ndarray, (M,), optional
        Mixup weight of each box; it becomes the box's objectness target (default 1).

    Returns
    -------
    tuple of numpy.ndarray, float32
        objectness (R, 1), center targets (R, 2), scale targets (R, 2), weights (R, 2),
        class targets (R, num_class), with R = sum over layers of H*W*anchors; rows are
        ordered layer, cell (row-major), anchor.

    Notes
    -----
    A box whose centre lies exactly on the right or bottom image border (possible only
    for a zero-size box there) is assigned to the last grid cell; GluonCV would index past
    the row and corrupt a neighbouring cell or fail.
    """
    obj, centers, scales, weights, clas = empty_targets(geometry, num_class)
    rows = yolo3_assigned(geometry, boxes, class_ids, mixratio)
    index = rows[:, ROW].astype(np.int64)
    obj[index, 0] = rows[:, OBJ]
    centers[index] = rows[:, CENTER]
    scales[index] = rows[:, SCALE]
    weights[index] = rows[:, WEIGHT, None]
    clas[index] = 0
    clas[index, rows[:, CLASS].astype(np.int64)] = 1
    return obj, centers, scales, weights, clas


def yolo3_assigned(geometry, boxes, class_ids, mixratio=None):
    """The rows of :func:`yolo3_targets` that are not "empty", one per assigned anchor.

    Every other row of the dense targets is the same (objectness, centre, scale and
    weight 0, class -1), so these rows are all a worker needs to send: the training
    side rebuilds the dense arrays from them (:mod:`.device_batch`).

    Parameters are those of :func:`yolo3_targets` (without `num_class`).

    Returns
    -------
    numpy.ndarray, (K, 8) float32
        One row per assigned anchor, in ascending row order, with columns ``ROW`` (row
        index in the dense targets, exact in float32 below 2**24 rows), ``OBJ``,
        ``CENTER`` (2), ``SCALE`` (2), ``WEIGHT`` (both weight columns are equal) and
        ``CLASS``: the float32 values the dense targets hold there.
    """
    if geometry.num_rows >= 2 ** 24:
        raise ValueError('{} target rows cannot be indexed exactly in float32 (at most '
                         '2**24); use a smaller input size'.format(geometry.num_rows))
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    count = _valid_prefix(boxes)
    if count == 0:
        return np.empty((0, ASSIGNED_COLUMNS), np.float32)
    boxes = boxes[:count]
    gtw = boxes[:, 2] - boxes[:, 0]
    gth = boxes[:, 3] - boxes[:, 1]
    gtx = boxes[:, 0] + gtw * np.float32(0.5)
    gty = boxes[:, 1] + gth * np.float32(0.5)
    match = geometry.match_anchors(gtw, gth)
    feat_h, feat_w = geometry._feat_h[match], geometry._feat_w[match]
    # GluonCV computes the cell position in float64 from float32 centres.
    fx = gtx.astype(np.float64) / geometry.width * feat_w
    fy = gty.astype(np.float64) / geometry.height * feat_h
    loc_x = np.minimum(fx.astype(np.int64), feat_w - 1)  # truncation, as int() (fx >= 0)
    loc_y = np.minimum(fy.astype(np.int64), feat_h - 1)
    rows = (geometry._row_base[match]
            + (loc_y * feat_w + loc_x) * geometry._anchors_in_layer[match])
    keep = _last_occurrence(rows)
    keep = keep[np.argsort(rows[keep], kind='stable')]
    anchor_wh = geometry.all_anchors[match[keep]]
    out = np.empty((len(keep), ASSIGNED_COLUMNS), np.float32)  # each value cast as stored
    out[:, ROW] = rows[keep]
    out[:, CENTER.start] = fx[keep] - loc_x[keep]
    out[:, CENTER.start + 1] = fy[keep] - loc_y[keep]
    out[:, SCALE.start] = np.log(np.maximum(gtw[keep], np.float32(1)) / anchor_wh[:, 0])
    out[:, SCALE.start + 1] = np.log(np.maximum(gth[keep], np.float32(1)) / anchor_wh[:, 1])
    area = gtw[keep].astype(np.float64) * gth[keep]
    out[:, WEIGHT] = 2.0 - area / geometry.width / geometry.height
    ratio = np.ones(count) if mixratio is None else np.asarray(mixratio).reshape(-1)[:count]
    out[:, OBJ] = ratio[keep]
    out[:, CLASS] = np.asarray(class_ids).reshape(-1)[:count][keep].astype(np.int64)
    return out


def _last_occurrence(keys):
    """Indices (ascending) of the last occurrence of each distinct key."""
    last = {key: i for i, key in enumerate(keys.tolist())}  # later indices overwrite
    return np.array(sorted(last.values()), np.int64)
