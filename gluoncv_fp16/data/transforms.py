"""Drop-in fast replacements for GluonCV's YOLOv3 train and validation transforms.

``YOLO3FastTrainTransform(width, height, net)`` takes the same arguments, is called the
same way and returns the same tuple as ``gluoncv.data.transforms.presets.yolo.
YOLO3DefaultTrainTransform``, with the same augmentation and target semantics, but does
the work in NumPy/OpenCV (see :mod:`.augment`, :mod:`.color`, :mod:`.targets`) and never
runs the network: anchors and feature-map sizes are read once, in FP32, from the net's
constants and symbolic shapes, so an FP16-cast network is a valid `net` too.
"""
import logging
import os

import cv2
import mxnet as mx
import numpy as np

from .augment import (AUTO_INTERP, GeneratorSource, apply_to_boxes, apply_to_image,
                      cv_interp, draw_decisions, identity_decisions)
from .augment import _write_into  # pylint: disable=protected-access
from .device_batch import host_view, pack_targets
from .targets import YOLOGeometry, yolo3_assigned, yolo3_targets

__all__ = ['YOLO3FastTrainTransform', 'YOLO3FastValTransform', 'to_numpy_image', 'to_ndarray',
           'to_uint8_chw']

logger = logging.getLogger(__name__)

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


to_numpy_image = host_view  # HxWx3 image as NumPy; CPU NDArrays are read in place


def to_ndarray(array):
    """float32 NDArray on cpu(0) sharing memory with a fresh NumPy array (no copy).

    The array must not be modified afterwards; every caller hands over arrays it has
    just built.
    """
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.size == 0:  # DLPack cannot wrap empty buffers
        return mx.nd.array(array, dtype='float32')
    return mx.nd.from_numpy(array, zero_copy=True)


def _to_label(label):
    label = label.asnumpy() if isinstance(label, mx.nd.NDArray) else np.asarray(label)
    if label.ndim != 2 or label.shape[1] < 5:
        raise ValueError("label must be (N, 5+) [xmin, ymin, xmax, ymax, class, ...], got "
                         "shape {}".format(label.shape))
    return label


class _Normalizer:
    """HWC float image in [0, 255] -> CHW float32 ``(x / 255 - mean) / std``."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each and std > 0, got mean={} "
                             "std={}".format(mean, std))

    def __call__(self, img):
        out = np.empty((3,) + img.shape[:2], np.float32)
        for c in range(3):
            np.divide(img[:, :, c], 255.0, out=out[c], casting='unsafe')
            out[c] -= self.mean[c]
            out[c] /= self.std[c]
        return out


def to_uint8_chw(image, offset=(0.0, 0.0, 0.0)):
    """(3, H, W) float image + per-channel `offset` -> uint8, rounded and clipped to [0, 255].

    OpenCV's saturating conversion rounds to nearest (ties to even, as ``np.rint``) in one
    pass per channel, ~10x faster than NumPy's add, round, clip and cast.
    """
    image = np.ascontiguousarray(image)
    out = np.empty(image.shape, np.uint8)
    for plane, result, value in zip(image, out, offset):
        _write_into(cv2.add(plane, float(value), dst=result, dtype=cv2.CV_8U), result)
    return out


def _resize_normalize(img, size, normalize):
    """GluonCV's validation image: resize in the source dtype (uint8 for decoded images,
    so values saturate as GluonCV's do) with automatic interpolation, then normalise."""
    interp = cv_interp(AUTO_INTERP, img.shape[:2], (size[1], size[0]))
    return normalize(cv2.resize(img, size, interpolation=interp))


class YOLO3FastTrainTransform:
    """YOLOv3 training transform: GluonCV's augmentations and targets, vectorised.

    Parameters
    ----------
    width, height : int
        Output image size.
    net : YOLOV3, optional
        The network (FP32 or FP16-cast); only its anchors and feature-map shapes are
        used, once. Without it, only (image, boxes) are returned.
    mean, std : sequence of 3 floats
        Normalisation, and the expand canvas is filled with ``mean * 255``.
    mixup : bool
        Labels carry a last column with the mixup weight; it becomes the objectness.
    augment : bool
        False: no random augmentation at all; the image is exactly what
        :class:`YOLO3FastValTransform` gives (plain resize + normalise).
    seed : int, optional
        Seed of the transform's own generator when called without `rng`. Without a
        seed, each process draws fresh entropy (so forked workers differ).
    **kwargs
        Accepted for signature compatibility with GluonCV (there they configure the
        target generator's Block, e.g. ``prefix``); they have no effect here.

    Calling ``t(img, label)`` returns, like GluonCV, NDArrays ``(image (3, H, W),
    objectness (R, 1), center_targets (R, 2), scale_targets (R, 2), weights (R, 2),
    class_targets (R, C), gt_boxes (M, 4))``, or without a net ``(image, boxes (M, 5+))``
    with the boxes a NumPy array, as GluonCV does. :meth:`apply` returns the same as
    float32 NumPy arrays for a given random generator or decisions; loaders use it to
    avoid NDArrays in workers.
    """

    def __init__(self, width, height, net=None, mean=_MEAN, std=_STD, mixup=False,
                 augment=True, seed=None, max_expand=4.0, **kwargs):
        self.width, self.height = int(width), int(height)
        self.max_expand = float(max_expand)
        self._normalize = _Normalizer(mean, std)
        self.mixup = bool(mixup)
        self.augment = bool(augment)
        self._seed = seed
        self._rng, self._rng_pid = None, None
        if kwargs:
            logger.debug('ignoring GluonCV target-generator options %s', sorted(kwargs))
        self.geometry = None if net is None else YOLOGeometry.from_net(net, width, height)
        self.num_class = None if net is None else len(net.classes)

    def _own_rng(self):
        if self._rng is None or self._rng_pid != os.getpid():
            self._rng = np.random.default_rng(self._seed)
            self._rng_pid = os.getpid()
        return self._rng

    def __call__(self, src, label, rng=None):
        out = self.apply(src, label, rng=rng)
        if self.geometry is None:  # GluonCV hands the boxes back as NumPy here
            return to_ndarray(out[0]), out[1]
        return tuple(to_ndarray(a) for a in out)

    def draw(self, src_shape, label, rng):
        """Random decisions for an image of shape `src_shape` (H, W, ...) and `label`."""
        if not self.augment:
            return identity_decisions()
        source = rng if hasattr(rng, 'crop_trials') else GeneratorSource(rng)
        return draw_decisions(source, src_shape[1], src_shape[0], label,
                              max_expand=self.max_expand)

    def apply(self, src, label, rng=None, decisions=None):
        """Transform one sample to float32 NumPy arrays (see the class docstring).

        Parameters
        ----------
        src : numpy.ndarray or mxnet.nd.NDArray, (H, W, 3)
            RGB image, uint8 or float.
        label : array-like, (N, 5+)
            [xmin, ymin, xmax, ymax, class, ...] in source pixels; with ``mixup=True``
            the last column is the mixup weight.
        rng : numpy.random.Generator or random source, optional
            Where the augmentation randomness comes from (default: own generator).
        decisions : augment.Decisions, optional
            Use these decisions instead of drawing.
        """
        img, decisions, boxes = self._decide(src, label, rng, decisions)
        size = (self.width, self.height)
        if decisions == identity_decisions():  # exactly the validation transform's image
            image = _resize_normalize(img, size, self._normalize)
        else:
            image = apply_to_image(img, decisions, size, self._normalize.mean,
                                   self._normalize.std)
        if self.geometry is None:
            return image, boxes.astype(np.float32)
        gt = boxes[:, :4].astype(np.float32)
        mixratio = boxes[:, -1] if self.mixup else None
        targets = yolo3_targets(self.geometry, gt, boxes[:, 4], self.num_class, mixratio)
        return (image,) + targets + (gt,)

    def apply_packed(self, src, label, rng=None, decisions=None):
        """Transform one sample for a packed batch (see :mod:`.device_batch`).

        Same arguments and the same random decisions as :meth:`apply`; returns
        ``(image (3, H, W) uint8, targets (1 + K, 8) float32, gt_boxes (M, 4) float32)``.
        The image is :meth:`apply`'s before normalisation (the augmented pixel, a float
        on the 0-255 scale) rounded to the nearest integer and clipped to [0, 255]; the
        targets are :meth:`apply`'s as :func:`.device_batch.pack_targets` stores them.
        Without a net, ``(image (3, H, W) uint8, boxes (M, 5+) float32)``.
        """
        img, decisions, boxes = self._decide(src, label, rng, decisions)
        size = (self.width, self.height)
        fill = tuple(255.0 * m for m in self._normalize.mean)
        if decisions == identity_decisions():
            resized = cv2.resize(img, size, interpolation=cv_interp(
                AUTO_INTERP, img.shape[:2], (size[1], size[0])))
            image = np.ascontiguousarray(resized.transpose(2, 0, 1)) \
                if resized.dtype == np.uint8 else to_uint8_chw(resized.transpose(2, 0, 1))
        else:
            # "normalised" with std 1/255: the pixel minus the fill, 0 where the fill is
            image = to_uint8_chw(apply_to_image(img, decisions, size, self._normalize.mean,
                                                (1.0 / 255,) * 3), fill)
        if self.geometry is None:
            return image, boxes.astype(np.float32)
        gt = boxes[:, :4].astype(np.float32)
        mixratio = boxes[:, -1] if self.mixup else None
        assigned = yolo3_assigned(self.geometry, gt, boxes[:, 4], mixratio)
        return image, pack_targets(assigned, self.geometry.num_rows, self.num_class,
                                   self._normalize.mean, self._normalize.std), gt

    def _decide(self, src, label, rng, decisions):
        """(image as NumPy, decisions drawn or given, boxes in output pixels)."""
        img = to_numpy_image(src)
        label = _to_label(label)
        if decisions is None:
            decisions = self.draw(img.shape, label, self._own_rng() if rng is None else rng)
        boxes = apply_to_boxes(label, decisions, (img.shape[1], img.shape[0]),
                               (self.width, self.height))
        return img, decisions, boxes


class YOLO3FastValTransform:
    """YOLOv3 validation transform: resize (GluonCV's automatic interpolation), normalise.

    Same arguments and outputs as GluonCV's ``YOLO3DefaultValTransform``: image
    (3, H, W) float32 NDArray, label (N, 5+) float32 NumPy array with boxes scaled to
    the output size.
    """

    def __init__(self, width, height, mean=_MEAN, std=_STD):
        self.width, self.height = int(width), int(height)
        self._normalize = _Normalizer(mean, std)

    def __call__(self, src, label):
        image, boxes = self.apply(src, label)
        return to_ndarray(image), boxes

    def apply(self, src, label):
        """(image (3, H, W), label (N, 5+)) as float32 NumPy arrays."""
        img = to_numpy_image(src)
        label = _to_label(label)
        size = (self.width, self.height)
        boxes = apply_to_boxes(label, identity_decisions(), (img.shape[1], img.shape[0]), size)
        return _resize_normalize(img, size, self._normalize), boxes.astype(np.float32)
