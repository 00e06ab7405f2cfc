"""The training batch as loader workers send it, and its unpacking on the training devices.

A dense YOLOv3 batch is 3.23 MB per image at 416 px with VOC's 20 classes: the float32
image (2.08 MB) and five per-anchor target arrays (1.15 MB) that are zero (class -1)
everywhere but at the few anchors a box was assigned to. Every byte of it is received and
copied by the one process that feeds the devices. As YOLOv5 does for the image, workers
send instead a **packed** batch, a tuple of four arrays:

* ``image`` (B, 3, H, W) uint8: the augmented image before normalisation, rounded and
  clipped to [0, 255] (:meth:`.transforms.YOLO3FastTrainTransform.apply_packed`);
* ``gt_boxes`` (B, M, 4) float32, padded with -1, as in the dense batch;
* ``assigned`` (B, K, 8) float32: each image's assigned target rows
  (:func:`.targets.yolo3_assigned`), padded with -1 to ``K = ASSIGNED_ROWS``;
* ``info`` (B, 8) float32: per image ``[R, C, mean (3), std (3)]``, the dense targets'
  row and class counts and the normalisation. Per image, so that the batch can be split
  or concatenated along its first axis like any other.

:func:`to_devices` splits it over the devices and unpacks each part there: the image is
cast to float32 and normalised, ``(x / 255 - mean) / std``, and the assigned rows are
scattered into the dense targets the YOLOv3 loss takes -- bit-identical to the dense
targets the transform computes (tested). A batch that is already dense (7 arrays, e.g.
GluonCV's) is only split.
"""
import mxnet as mx
import numpy as np
from mxnet import gluon

from .targets import ASSIGNED_COLUMNS, CENTER, CLASS, OBJ, ROW, SCALE, WEIGHT

__all__ = ['ASSIGNED_ROWS', 'INFO_COLUMNS', 'pack_info', 'is_packed', 'batch_info',
           'normalize_image', 'expand_targets', 'unpack', 'to_devices']

ASSIGNED_ROWS = 256  # per image; the loader's box limit for a ring slot, too
INFO_COLUMNS = 8


def pack_info(num_rows, num_class, mean, std):
    """One image's ``info`` row (8,) float32: ``[R, C, mean (3), std (3)]``."""
    return np.array([num_rows, num_class] + list(mean) + list(std), np.float32)


def is_packed(batch):
    """Whether `batch` is a packed batch (4 arrays, uint8 image), not a dense one."""
    return len(batch) == 4 and np.dtype(batch[0].dtype) == np.uint8


def batch_info(info):
    """``(num_rows, num_class, mean, std)`` from a batch's ``info`` array (B, 8).

    Raises
    ------
    ValueError
        If the rows disagree (parts of batches made for different input sizes, networks
        or normalisations were put together).
    """
    info = info.asnumpy() if isinstance(info, mx.nd.NDArray) else np.asarray(info)
    if info.ndim != 2 or info.shape[1] != INFO_COLUMNS or len(info) == 0:
        raise ValueError('expected the info array of a packed batch, (B, {}), got shape {}'
                         .format(INFO_COLUMNS, info.shape))
    if not (info == info[0]).all():
        raise ValueError('the images of a packed batch disagree on target rows, classes or '
                         'normalisation: {} distinct info rows'.format(len(np.unique(info,
                                                                                   axis=0))))
    row = info[0]
    return int(row[0]), int(row[1]), tuple(row[2:5].tolist()), tuple(row[5:8].tolist())


def normalize_image(image, mean, std):
    """uint8 (B, 3, H, W) -> float32 ``(image / 255 - mean) / std``, on image's device.

    Two operators: the cast, then one per-channel ``(x - 255 mean) / (255 std)``.
    """
    return mx.nd.image.normalize(image.astype('float32'),
                                 mean=tuple(255.0 * m for m in mean),
                                 std=tuple(255.0 * s for s in std))


def expand_targets(assigned, num_rows, num_class):
    """Dense YOLOv3 targets from assigned rows, on `assigned`'s device.

    Parameters
    ----------
    assigned : mxnet.nd.NDArray, (B, K, 8) float32
        Rows of :func:`.targets.yolo3_assigned`, padding rows holding -1.
    num_rows, num_class : int
        R and C of the dense targets.

    Returns
    -------
    tuple of mxnet.nd.NDArray, float32
        objectness (B, R, 1), centers (B, R, 2), scales (B, R, 2), weights (B, R, 2),
        class targets (B, R, C): 0 (class -1) where nothing is assigned, the row's values
        where something is -- exactly :func:`.targets.yolo3_targets`'s arrays stacked.
    """
    batch, rows = assigned.shape[0], assigned.shape[1]
    row = assigned.slice_axis(axis=2, begin=ROW, end=ROW + 1).reshape((batch, rows))
    valid = row >= 0
    # padding rows all go to one extra row R, cut off below (scatter_nd leaves
    # duplicate writes to one place undefined; nothing reads that place)
    row = mx.nd.where(valid, row, mx.nd.full(row.shape, num_rows, ctx=row.context))
    image = mx.nd.arange(batch, ctx=row.context).reshape((batch, 1)).broadcast_like(row)
    values = mx.nd.concat(valid.reshape((batch, rows, 1)),
                          assigned.slice_axis(axis=2, begin=1, end=ASSIGNED_COLUMNS), dim=2)
    dense = mx.nd.scatter_nd(values.reshape((-1, ASSIGNED_COLUMNS)),
                             mx.nd.stack(image.reshape(-1), row.reshape(-1)),
                             shape=(batch, num_rows + 1, ASSIGNED_COLUMNS))
    dense = dense.slice_axis(axis=1, begin=0, end=num_rows)

    def column(where):  # the dense array's columns shifted by the flag in column 0
        start, stop = (where.start, where.stop) if isinstance(where, slice) else \
            (where, where + 1)
        return dense.slice_axis(axis=2, begin=start, end=stop)
    flag = column(0)  # 1 where assigned, 0 elsewhere (ROW's place holds the flag)
    weight = column(WEIGHT)
    clas = mx.nd.one_hot(column(CLASS).reshape((batch, num_rows)), num_class)
    clas = clas * flag + (flag - 1)  # one-hot where assigned, -1 elsewhere; exact
    return (column(OBJ), column(CENTER), column(SCALE), mx.nd.concat(weight, weight, dim=2),
            clas)


def unpack(batch):
    """A packed batch (any device) as the dense 7 arrays on that device.

    Returns ``(image float32 (B, 3, H, W), gt_boxes, objectness, centers, scales,
    weights, class targets)``; a dense batch is returned as it is.
    """
    if not is_packed(batch):
        return tuple(batch)
    image, gt_boxes, assigned, info = batch
    num_rows, num_class, mean, std = batch_info(info)
    return (normalize_image(image, mean, std), gt_boxes) + \
        expand_targets(assigned, num_rows, num_class)


def to_devices(batch, contexts):
    """Split a host batch over `contexts` and unpack each part on its device.

    Returns
    -------
    list of 7 lists
        ``[images, gt_boxes, obj, centers, scales, weights, clas]``, each holding one
        NDArray per context (what ``split_and_load`` of a dense batch gives).
    """
    parts = [gluon.utils.split_and_load(a, contexts, even_split=False) for a in batch]
    if not is_packed(batch):
        return parts
    num_rows, num_class, mean, std = batch_info(batch[3])
    dense = [(normalize_image(image, mean, std), gt) + expand_targets(rows, num_rows,
                                                                      num_class)
             for image, gt, rows in zip(*parts[:3])]
    return [list(arrays) for arrays in zip(*dense)]
