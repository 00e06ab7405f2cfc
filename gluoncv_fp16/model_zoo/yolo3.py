"""FP16-safe YOLOv3: GluonCV's blocks, subclassed so that `net.cast('float16')` works.

Where precision changes in the network (the one place this is decided):

* Backbone, detection blocks, transitions, prediction convolutions: compute dtype
  (FP16 after `cast('float16')`; on CPU via :mod:`gluoncv_fp16.precision.cpu_half`).
* BatchNorm gamma/beta/statistics: FP32 (MXNet's own `BatchNorm.cast` rule).
* Everything after each prediction conv -- box decode (`exp(raw) * anchor` overflows
  FP16 for raw > ~5), anchors and grid offsets, the dynamic target generator and its IoU
  (areas of boxes over ~256 px overflow FP16, eps 1e-15 rounds to 0), YOLOV3Loss (its
  class denominator exceeds 65504), NMS and the returned detections: FP32.

In FP32 the subclasses add no operator, so they compute bit-for-bit what GluonCV does,
and parameter names are unchanged, so GluonCV `.params` files load as they are.
"""
import logging
import os

import mxnet as mx
import numpy as np
from mxnet.gluon import nn
from gluoncv.model_zoo.yolo.yolo3 import YOLOV3, YOLOOutputV3

from ..precision.cpu_half import HalfSafeConv2D, make_half_safe
from ..errors import CheckpointError
from ..mxnet_compat import label_smoothing, set_label_smoothing
from .params import named_params, param_mismatch

__all__ = ['FP32OutputConv2D', 'FP16SafeYOLOOutputV3', 'FP16SafeYOLOV3', 'make_fp16_safe',
           'CheckpointError']

logger = logging.getLogger(__name__)


_REBUILD_HINT = "Build the network the file was saved from (same name and classes)."
_SUBSET_HINT = ("Build the network the file was saved from, or pass allow_missing=True / "
                "ignore_extra=True to load only the parameters the two have in common.")
_CLASSES_HINT = ("Build the network with the file's classes and load into that; to "
                 "fine-tune on other classes, call net.reset_class(classes) afterwards.")


def _is_fp32(param):
    return np.dtype(param.dtype) == np.float32


class FP32OutputConv2D(HalfSafeConv2D):
    """The 1x1 prediction conv: computes in the net's dtype, always returns FP32."""

    def hybrid_forward(self, F, x, weight, bias=None):
        out = super().hybrid_forward(F, x, weight, bias)
        return out if _is_fp32(self.weight) else F.cast(out, dtype='float32')


class FP16SafeYOLOOutputV3(YOLOOutputV3):
    """YOLO output layer whose decode runs in FP32 whatever the network's dtype."""

    def cast(self, dtype):
        # The prediction conv follows the net; anchors and offsets stay FP32 because
        # they feed the FP32 decode (offsets up to 128 would survive FP16, but mixing
        # dtypes in the decode is exactly what breaks stock GluonCV).
        super().cast(dtype)
        for param in self.params.values():
            param.cast('float32')

    def hybrid_forward(self, F, x, anchors, offsets):
        # Guard for parameters cast behind the block's back (ParameterDict.cast).
        if not _is_fp32(self.anchors):
            anchors = F.cast(anchors, dtype='float32')
        if not _is_fp32(self.offsets):
            offsets = F.cast(offsets, dtype='float32')
        return super().hybrid_forward(F, x, anchors, offsets)

    def __setattr__(self, name, value):
        # GluonCV's reset_class assigns a plain nn.Conv2D to `prediction`, and Gluon
        # refuses to change a child's type: the new conv becomes FP32-output before
        # it is registered.
        if name == 'prediction' and type(value) is nn.Conv2D:  # pylint: disable=C0123
            _make_output_conv(value)
        super().__setattr__(name, value)

    def reset_class(self, classes, reuse_weights=None):
        """GluonCV's reset_class; the new prediction conv takes the old one's dtype.

        GluonCV initialises the new conv in FP32, which an FP16 network's FP16
        features cannot feed; rows reused from the old conv are copied before the cast.
        """
        dtype = self.prediction.weight.dtype
        super().reset_class(classes, reuse_weights=reuse_weights)
        if np.dtype(dtype) != np.float32:
            self.prediction.cast(dtype)


class FP16SafeYOLOV3(YOLOV3):
    """YOLOv3 whose training and inference graphs type-check after `cast('float16')`.

    Training inputs are ``(x, gt_boxes, obj_t, centers_t, scales_t, weights_t, clas_t)``
    with `x` in the net's dtype (B, 3, H, W); the targets are used in FP32 whatever
    dtype they arrive in. Losses and detections are FP32.
    """

    def hybrid_forward(self, F, x, *args):
        targets = [F.cast(arg, dtype='float32') for arg in args] if self._targets_cast() \
            else list(args)
        return super().hybrid_forward(F, x, *targets)

    def reset_class(self, classes, reuse_weights=None):
        """GluonCV's `reset_class` (fine-tuning on other classes), kept FP16-safe.

        Parameters
        ----------
        classes : list of str
            The new class names.
        reuse_weights : list of str or dict, optional
            As GluonCV: class names present in both, or a ``{new: old}`` mapping by index
            or name, whose prediction rows are copied from the old output layers.

        The network must be initialised (GluonCV's rule); the new prediction convs get
        the network's dtype, and label smoothing, if set, survives the new target
        generator GluonCV creates.
        """
        smooth = label_smoothing(self)
        super().reset_class(list(classes), reuse_weights=reuse_weights)
        if smooth:
            self.set_label_smooth(True)

    def set_label_smooth(self, enabled=True):
        """Label smoothing of class targets (GluonCV's --label-smooth).

        GluonCV takes it only as a constructor argument (see
        :func:`gluoncv_fp16.mxnet_compat.set_label_smoothing`).
        """
        set_label_smoothing(self, enabled)

    def _targets_cast(self):
        """Targets need widening only when the network itself is not FP32."""
        return not all(_is_fp32(out.prediction.weight) for out in self.yolo_outputs)

    def load_parameters(self, filename, ctx=None, allow_missing=False, ignore_extra=False,
                        cast_dtype=True, dtype_source='current'):
        """Load a `.params` file, casting FP32 <-> FP16 to this net's dtypes by default.

        The whole file is checked against the network (names, shapes, and dtypes when
        `cast_dtype` is False) before any parameter is written, so a file that does not
        fit leaves the network exactly as it was. (MXNet's loader checks parameter by
        parameter and would leave the backbone loaded and the rest not.) The price is
        reading the file twice.

        Raises
        ------
        FileNotFoundError
            If `filename` does not exist.
        CheckpointError
            If the file is not an MXNet parameter file, or holds another network or
            class count (names or shapes differ).
        """
        if not os.path.isfile(filename):
            raise FileNotFoundError("No parameter file at '{}'".format(filename))
        try:
            saved = mx.nd.load(filename)
        except mx.base.MXNetError as err:
            raise self._mismatch(filename, 'not an MXNet parameter file ({})'.format(
                _first_line(err))) from None
        problem = _load_problem(self, saved, allow_missing, ignore_extra, cast_dtype)
        if problem:
            raise self._mismatch(filename, *problem)
        try:
            super().load_parameters(filename, ctx=ctx, allow_missing=allow_missing,
                                    ignore_extra=ignore_extra, cast_dtype=cast_dtype,
                                    dtype_source=dtype_source)
        except (AssertionError, ValueError, mx.base.MXNetError) as err:
            raise self._mismatch(filename, _first_line(err)) from err

    def _mismatch(self, filename, problem, hint=_REBUILD_HINT):
        return CheckpointError("Cannot load '{}' into {} ({} classes): {}. {}".format(
            filename, self.name, len(self.classes), problem, hint))


def _load_problem(net, saved, allow_missing, ignore_extra, cast_dtype):
    """(problem, hint) if `saved` (name -> NDArray) cannot be loaded into `net`, else None."""
    if not isinstance(saved, dict):
        return 'the file holds unnamed arrays, not network parameters', _REBUILD_HINT
    if not any('.' in name for name in saved):
        return None  # legacy prefixed names: MXNet's ParameterDict.load checks those
    own = named_params(net)
    mismatch = param_mismatch(own, saved, allow_missing, ignore_extra)
    if mismatch and mismatch.missing:
        return '{} of its parameters are missing from the file (e.g. {})'.format(
            len(mismatch.missing), ', '.join(mismatch.missing[:3])), _SUBSET_HINT
    if mismatch and mismatch.extra:
        return 'the file has {} parameters this network does not (e.g. {})'.format(
            len(mismatch.extra), ', '.join(mismatch.extra[:3])), _SUBSET_HINT
    if mismatch:
        return "'{}' is {} in the file but {} here{}".format(
            mismatch.name, mismatch.saved_shape, mismatch.own_shape,
            _class_hint(net, saved)), _CLASSES_HINT
    if not cast_dtype:
        for name in (n for n in own if n in saved):
            if np.dtype(own[name].dtype) != saved[name].dtype:
                return "'{}' is {} in the file but {} here".format(
                    name, saved[name].dtype, np.dtype(own[name].dtype)), 'Pass cast_dtype=True.'
    return None


def _class_hint(net, saved):
    """'(the file predicts 80 classes)' when the output layers tell the class count."""
    try:
        rows = saved['yolo_outputs.0.prediction.bias'].shape[0]
        anchors = saved['yolo_outputs.0.anchors'].shape[2]
    except (KeyError, IndexError):
        return ''
    return ' (the file predicts {} classes, this network {})'.format(
        rows // anchors - 5, len(net.classes))


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _make_output_conv(conv):
    conv.__class__ = FP32OutputConv2D


def make_fp16_safe(net):
    """Convert a GluonCV `YOLOV3` (and all its layers) in place to the FP16-safe classes.

    Works on any `gluoncv.model_zoo.yolo.yolo3.YOLOV3`, including ones built by hand.
    Parameter names and values are untouched. Returns `net`.
    """
    if not isinstance(net, YOLOV3):
        raise TypeError("make_fp16_safe expects a gluoncv YOLOV3 network, got {}"
                        .format(type(net).__name__))
    make_half_safe(net)
    for output in net.yolo_outputs:
        output.__class__ = FP16SafeYOLOOutputV3
        _make_output_conv(output.prediction)
    net.__class__ = FP16SafeYOLOV3
    return net
