"""The FP16-cast network computes what the FP32 network computes, to FP16 accuracy.

Same weights; the FP16 run goes through the CPU half path (FP16 storage, FP32
accumulation in Conv2D). What is compared: the raw predictions (centre/scale/objectness/
class logits), the four training losses, and the inference scores and boxes (NMS off,
so rows correspond one to one).

Tolerance (the derivation is in docs/model_zoo.md, "FP16 vs FP32 agreement"):
FP16 has unit roundoff u = 2**-11. With FP32 accumulation, each convolution layer
contributes about two independent roundings of relative size <= u (its FP16 weights and
its FP16 output). In a network whose layers neither amplify nor shrink perturbations
(see below), independent relative errors from L layers add in quadrature, so the
norm-wise relative error of the output is about sqrt(2 L / 3) u (a rounding error is
uniform on [-u, u], RMS u/sqrt(3)). We allow TOL = 2 sqrt(L) u, i.e. ~2.4x that estimate,
where L is the number of convolutions on the deepest path (counted from the network).
Everything after the prediction conv is FP32 and 1-Lipschitz-ish in the logits
(sigmoid' <= 1/4, BCE' <= 1, L1' <= 1, exp' = exp on O(1) logits), so losses, scores and
boxes get the same relative tolerance (scores: absolute, since they live in [0, 1]).

Which network state: "sane" here means a network whose layers keep perturbations O(1)
-- as a trained one does. BatchNorm with batch statistics at random init is NOT that:
it is chaotic (a relative input perturbation of 2**-11 in pure FP32 already changes
yolo3_mobilenet0.25's raw outputs by ~35%), so FP16 could not be told from noise there.
We freeze BatchNorm at its (identity) initial statistics (use_global_stats=True) and
initialise so that activation variance is preserved layer to layer: He init for the
plain ReLU chain of MobileNet, LeCun init for Darknet, whose 23 residual additions would
otherwise double the variance per block and overflow FP16.
"""
import math
import random

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from mxnet.gluon import nn

from helpers import yolo_training_batch
from gluoncv_fp16.model_zoo import get_model

UNIT_ROUNDOFF = 2.0 ** -11
INITS = {
    'yolo3_mobilenet0.25_voc': mx.init.MSRAPrelu(factor_type='in', slope=0.0),
    'yolo3_darknet53_voc': mx.init.Xavier(rnd_type='gaussian', factor_type='in',
                                          magnitude=1),
}


def conv_depth(net):
    """Convolutions on the deepest path: backbone, detection blocks, transitions, head.

    Counts every conv in the three detection blocks (the deepest output passes through
    16 of their 18), so it slightly over-estimates L, which only loosens the tolerance.
    """
    count = [0]

    def visit(block):
        count[0] += isinstance(block, nn.Conv2D)
    for part in (net.stages, net.yolo_blocks, net.transitions):
        part.apply(visit)
    return count[0] + 1  # the prediction conv


def relative_error(got, want):
    want = want.astype(np.float64)
    return float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want))


def run_all_paths(net, image, gt, targets, dtype):
    """Raw predictions (training mode, no recording), losses, and NMS-free detections."""
    x = image.astype(dtype)
    with autograd.train_mode():
        raw = net(x)[4:]  # centres, scales, objectness, class logits (GluonCV's order)
    with autograd.record():
        losses = net(x, gt, *targets)
    _, scores, boxes = net(x)
    return {'raw': [r.asnumpy() for r in raw], 'losses': [l.asnumpy() for l in losses],
            'scores': scores.asnumpy(), 'boxes': boxes.asnumpy()}


@pytest.fixture(scope='module', params=sorted(INITS))
def fp32_and_fp16(request):
    """(name, depth, FP32 results, FP16 results) for one network and one set of weights."""
    name = request.param
    # Module scope runs before conftest's per-test seeding; GluonCV's transform draws
    # from `random` and NumPy, the initialiser from MXNet: seed all three for one batch.
    random.seed(0)
    np.random.seed(0)
    mx.random.seed(0)
    net = get_model(name, pretrained_base=False, norm_kwargs={'use_global_stats': True})
    net.initialize(INITS[name])
    image, gt, targets = yolo_training_batch(net)
    net.set_nms(nms_thresh=0, nms_topk=-1, post_nms=-1)  # keep every row, in order
    fp32 = run_all_paths(net, image, gt, targets, 'float32')
    net.cast('float16')
    assert np.dtype(net.yolo_outputs[0].prediction.weight.dtype) == np.float16
    fp16 = run_all_paths(net, image, gt, targets, 'float16')
    return name, conv_depth(net), fp32, fp16


def tolerance(depth):
    return 2.0 * math.sqrt(depth) * UNIT_ROUNDOFF


def test_the_compared_network_is_in_a_sane_regime(fp32_and_fp16):
    """Guards the premise: O(1) logits and non-trivial scores, else agreement is vacuous."""
    name, _, fp32, _ = fp32_and_fp16
    peak = max(float(np.abs(r).max()) for r in fp32['raw'])
    assert 0.5 < peak < 10, '{}: raw logits peak at {:.3g}'.format(name, peak)
    assert fp32['scores'].max() > 0.3, 'all scores ~0.25 means all logits ~0'
    assert all(np.isfinite(v).all() for v in fp32['raw'] + fp32['losses'] + [fp32['boxes']])


def test_raw_predictions_agree_within_fp16_tolerance(fp32_and_fp16):
    name, depth, fp32, fp16 = fp32_and_fp16
    labels = ('box centres', 'box scales', 'objectness', 'class logits')
    for label, got, want in zip(labels, fp16['raw'], fp32['raw']):
        assert got.dtype == np.float32  # the output layer widens before the decode
        err = relative_error(got, want)
        assert err > 0, '{} {}: identical, so the FP16 path did not run'.format(name, label)
        assert err <= tolerance(depth), (
            '{} {}: relative error {:.3g} > tolerance 2*sqrt({})*2^-11 = {:.3g}'.format(
                name, label, err, depth, tolerance(depth)))


def test_losses_agree_within_fp16_tolerance(fp32_and_fp16):
    name, depth, fp32, fp16 = fp32_and_fp16
    labels = ('obj_loss', 'center_loss', 'scale_loss', 'cls_loss')
    for label, got, want in zip(labels, fp16['losses'], fp32['losses']):
        err = relative_error(got, want)
        assert err <= tolerance(depth), '{} {}: relative error {:.3g} > {:.3g}'.format(
            name, label, err, tolerance(depth))


def test_scores_and_boxes_agree_within_fp16_tolerance(fp32_and_fp16):
    name, depth, fp32, fp16 = fp32_and_fp16
    score_err = float(np.abs(fp16['scores'] - fp32['scores']).max())
    box_err = relative_error(fp16['boxes'], fp32['boxes'])
    assert score_err <= tolerance(depth), '{} scores: max abs error {:.3g} > {:.3g}'.format(
        name, score_err, tolerance(depth))
    assert box_err <= tolerance(depth), '{} boxes: relative error {:.3g} > {:.3g}'.format(
        name, box_err, tolerance(depth))
