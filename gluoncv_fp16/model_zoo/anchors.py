"""A YOLOv3 network's anchors: read them, build a network with others, find them in weights.

GluonCV's YOLOv3 builders (``yolo3_*_voc/coco/custom``) fix COCO's anchors and do not
take an ``anchors`` argument. Each output layer keeps its three anchors in a
``gluon.Constant`` whose ``value`` is what ``initialize`` writes, so a network built by
those builders gets other anchors by writing that value before it is initialised (and
the data, if it already is). The anchors are parameters: ``save_parameters`` writes
them (``yolo_outputs.<i>.anchors``) and ``load_parameters`` restores them, so every
``.params`` file and checkpoint carries the anchors it was trained with.

Format: GluonCV's constructor argument, three groups of three ``(width, height)`` pairs
in pixels, smallest scale first: ``[[w, h, w, h, w, h], [...], [...]]``. GluonCV hands
the groups to the output layers in reverse (``yolo_outputs[0]``, stride 32, gets the
last, largest group).
"""
import math

import mxnet as mx
import numpy as np

__all__ = ['GLUONCV_ANCHORS', 'network_anchors', 'set_anchors', 'anchors_in_params',
           'check_anchors']

# The anchors of all nine GluonCV YOLOv3 models (COCO's, from the YOLOv3 paper).
GLUONCV_ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119),
                   (116, 90, 156, 198, 373, 326))


def check_anchors(anchors, groups=3):
    """`anchors` as a list of `groups` lists of floats, or ValueError saying what is wrong.

    Each group must hold whole ``(width, height)`` pairs, all groups the same count,
    every value a positive finite number.
    """
    try:
        plain = [[float(v) for v in group] for group in anchors]
    except (TypeError, ValueError):
        raise ValueError('anchors must be {} lists of widths and heights, e.g. {}, got {!r}'
                         .format(groups, [list(g) for g in GLUONCV_ANCHORS], anchors)) from None
    sizes = {len(group) for group in plain}
    if len(plain) != groups or len(sizes) != 1 or sizes.pop() % 2:
        raise ValueError('anchors must be {} lists of the same even length (w, h pairs), '
                         'got {!r}'.format(groups, anchors))
    if not all(math.isfinite(v) and v > 0 for group in plain for v in group):
        raise ValueError('anchors must be positive finite pixel sizes, got {!r}'.format(anchors))
    return plain


def network_anchors(net):
    """The anchors `net` (a GluonCV YOLOV3) is built with, GluonCV format (floats)."""
    groups = []
    for output in net.yolo_outputs:
        try:
            value = output.anchors.data(output.anchors.list_ctx()[0])
        except RuntimeError:  # not initialised yet: what initialize() will write
            value = output.anchors.value
        groups.append(_decimal(value.asnumpy()))
    return groups[::-1]


def _decimal(array):
    """Floats of a float32 `array` by their shortest decimal form: 2.59 stored as float32
    reads back as 2.59, not 2.5899999141693115."""
    return [float(str(np.float32(v))) for v in np.asarray(array).ravel()]


def set_anchors(net, anchors):
    """Give `net` (a GluonCV YOLOV3, initialised or not) other `anchors`. Returns `net`.

    The count per scale must stay the network's (its prediction layers are sized by it).

    Raises
    ------
    ValueError
        Malformed anchors, or a count per scale the network does not have.
    """
    groups = check_anchors(anchors, groups=len(net.yolo_outputs))
    for output, group in zip(net.yolo_outputs, groups[::-1]):
        constant = output.anchors
        if len(group) != int(np.prod(constant.shape)):
            raise ValueError('{} predicts {} anchors per scale; got {} numbers ({} wanted)'
                             .format(net.name, constant.shape[2], len(group),
                                     int(np.prod(constant.shape))))
        value = mx.nd.array(np.asarray(group, np.float32).reshape(constant.shape),
                            dtype=constant.value.dtype)
        value.copyto(constant.value)  # what initialize() writes
        try:
            constant.list_ctx()
        except RuntimeError:  # not initialised: the value above is all there is
            continue
        constant.set_data(value.astype(constant.dtype))
    return net


def anchors_in_params(params):
    """GluonCV-format anchors held by saved weights ({structural name: array}), or None
    when they hold no ``yolo_outputs.<i>.anchors`` (not a YOLOv3 file)."""
    groups, index = [], 0
    while 'yolo_outputs.{}.anchors'.format(index) in params:
        value = params['yolo_outputs.{}.anchors'.format(index)]
        value = value.asnumpy() if isinstance(value, mx.nd.NDArray) else np.asarray(value)
        groups.append(_decimal(value))
        index += 1
    return groups[::-1] if groups else None
