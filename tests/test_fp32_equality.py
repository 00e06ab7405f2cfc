"""In FP32 our networks ARE GluonCV's: same graph, bit-identical losses and detections.

The model zoo promises that the FP16-safe subclasses add no operator while the weights
are FP32 (see gluoncv_fp16/model_zoo/yolo3.py). If that ever stops being true, an FP32
user of this package silently trains a different network from GluonCV's, so equality is
checked bit for bit, not within a tolerance.
"""
import json

import gluoncv
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from helpers import yolo_training_batch
from gluoncv_fp16.model_zoo import YOLO3_MODELS, get_model

TARGET_NAMES = ('gt_boxes', 'obj_t', 'centers_t', 'scales_t', 'weights_t', 'clas_t')
# LeCun-uniform weights (variance 1/fan_in) keep activations O(1) through darknet's
# residual sums, so the untrained boxes are finite numbers to compare rather than all
# +inf (GluonCV's default Uniform(0.07) overflows exp() in the darknet decode, FP32 too).
INIT = mx.init.Xavier(rnd_type='uniform', factor_type='in', magnitude=3)


def build_pair(name, tmp_path):
    """(ours, stock), identical weights, both hybridized, plus a training batch."""
    kwargs = {'pretrained_base': False}
    if name.endswith('_custom'):
        kwargs['classes'] = ['circle', 'square', 'triangle']
    ours = get_model(name, **kwargs)
    stock = gluoncv.model_zoo.get_model(name, **kwargs)
    assert type(stock) is not type(ours), 'comparing a network with itself proves nothing'
    ours.initialize(INIT)
    image, gt, targets = yolo_training_batch(ours)  # its fake forward fixes all shapes
    path = str(tmp_path / 'weights.params')
    ours.save_parameters(path)
    stock.load_parameters(path)
    return ours, stock, (image, gt, targets)


def losses_and_detections(net, image, gt, targets):
    """Training losses, then (after re-hybridizing: a new call signature) detections."""
    net.hybridize()
    with autograd.record():
        losses = net(image, gt, *targets)
    net.hybridize()
    detections = net(image)
    return [out.asnumpy() for out in list(losses) + list(detections)]


def graph_ops(net, training):
    """The operator sequence of the traced graph (names differ by prefix, ops must not)."""
    data = mx.sym.var('data')
    if training:
        with autograd.record():
            out = net(data, *[mx.sym.var(n) for n in TARGET_NAMES])
    else:
        with autograd.predict_mode():
            out = net(data)
    nodes = json.loads(mx.sym.Group(list(out)).tojson())['nodes']
    return [node['op'] for node in nodes if node['op'] != 'null']


@pytest.mark.parametrize('name', YOLO3_MODELS)
def test_fp32_losses_and_detections_are_bit_identical_to_gluoncv(name, tmp_path):
    ours, stock, (image, gt, targets) = build_pair(name, tmp_path)
    for training in (True, False):
        assert graph_ops(ours, training) == graph_ops(stock, training), \
            'the FP32 graph gained or lost operators (training={})'.format(training)
    got = losses_and_detections(ours, image, gt, targets)
    want = losses_and_detections(stock, image, gt, targets)
    labels = ('obj_loss', 'center_loss', 'scale_loss', 'cls_loss', 'ids', 'scores', 'boxes')
    for label, a, b in zip(labels, got, want):
        assert a.dtype == b.dtype == np.float32, label
        # assert_array_equal: exact, with NaN == NaN (an untrained net may emit either).
        np.testing.assert_array_equal(a, b, err_msg='{}: {} differs'.format(name, label))
    assert np.isfinite(got[6]).all(), 'boxes overflowed: the comparison would be vacuous'
    assert got[5].max() > 0, 'no detection survived NMS: the comparison would be vacuous'
