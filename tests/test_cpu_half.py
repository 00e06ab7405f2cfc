"""CPU half-precision layers: invisible in FP32, FP16-accurate in FP16, no stray casts.

Error bound used for FP16 (first order in u, elementwise). With FP16 storage and FP32
accumulation, an output y = sum_k a_k b_k differs from the FP32 result on the unrounded
operands by at most
    (2u + u) * sum_k |a_k| |b_k|  +  K * 2**-24 * sum_k |a_k| |b_k|
-- u = 2**-11 for rounding each operand to FP16 (two operands), u for rounding the
result to FP16 (|y| <= sum |a||b|), and K * 2**-24 for FP32 accumulation of K terms in
any order. `sum |a||b|` is obtained by running the same layer on absolute values; the
same holds for the input gradient (operands dy, W) and the weight gradient (x, dy).
"""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from mxnet.gluon import nn

from gluoncv_fp16.precision.cpu_half import (HalfSafeBatchNorm, HalfSafeConv2D, HalfSafeDense,
                                             needs_fp32_accumulation)

UNIT_ROUNDOFF = 2.0 ** -11
FP32_EPS = 2.0 ** -24

# (half-safe class, stock class, constructor kwargs, input shape, accumulation length K)
LAYERS = {
    'conv': (HalfSafeConv2D, nn.Conv2D,
             dict(channels=8, kernel_size=3, padding=1, in_channels=4), (2, 4, 12, 12),
             2 * 12 * 12),  # longest sum: the weight gradient over batch x positions
    'dense': (HalfSafeDense, nn.Dense, dict(units=6, in_units=40), (5, 40), 40),
}


def make_layer(cls, kwargs, weight, bias, dtype='float32'):
    layer = cls(**kwargs)
    layer.initialize()
    layer.cast(dtype)
    layer.weight.set_data(mx.nd.array(weight, dtype=dtype))
    layer.bias.set_data(mx.nd.array(bias, dtype=dtype))
    return layer


def forward_backward(layer, x, dy, hybridize=False):
    """(y, dx, dweight, dbias) as numpy arrays in the dtypes the layer produced."""
    if hybridize:
        layer.hybridize()
    x = mx.nd.array(x, dtype=layer.weight.dtype)
    x.attach_grad()
    with autograd.record():
        y = layer(x)
    y.backward(mx.nd.array(dy, dtype=layer.weight.dtype))
    return [a.asnumpy() for a in (y, x.grad, layer.weight.grad(), layer.bias.grad())]


def random_case(name, seed=0):
    _, _, kwargs, shape, _ = LAYERS[name]
    rng = np.random.RandomState(seed)
    probe = make_layer(nn.Conv2D if name == 'conv' else nn.Dense, kwargs,
                       *_shapes_only(name))
    weight = rng.normal(0, 0.5, probe.weight.shape).astype(np.float32)
    bias = rng.normal(0, 0.5, probe.bias.shape).astype(np.float32)
    x = rng.normal(0, 1, shape).astype(np.float32)
    out_shape = probe(mx.nd.array(x)).shape
    dy = rng.normal(0, 1, out_shape).astype(np.float16).astype(np.float32)  # FP16-exact
    return weight, bias, x, dy


def _shapes_only(name):
    kwargs = LAYERS[name][2]
    if name == 'conv':
        w = np.zeros((kwargs['channels'], kwargs['in_channels'], 3, 3), np.float32)
        return w, np.zeros(kwargs['channels'], np.float32)
    return np.zeros((kwargs['units'], kwargs['in_units']), np.float32), \
        np.zeros(kwargs['units'], np.float32)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('name', sorted(LAYERS))
def test_fp32_weights_are_bit_identical_to_the_stock_layer(name, hybridize):
    half_safe, stock, kwargs, _, _ = LAYERS[name]
    weight, bias, x, dy = random_case(name)
    got = forward_backward(make_layer(half_safe, kwargs, weight, bias), x, dy, hybridize)
    want = forward_backward(make_layer(stock, kwargs, weight, bias), x, dy, hybridize)
    for label, a, b in zip(('y', 'dx', 'dweight', 'dbias'), got, want):
        assert a.dtype == np.float32, label
        np.testing.assert_array_equal(a, b, err_msg=label)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('name', sorted(LAYERS))
def test_fp16_weights_on_cpu_match_fp32_within_the_rounding_bound(name, hybridize):
    half_safe, stock, kwargs, _, accumulation = LAYERS[name]
    weight, bias, x, dy = random_case(name)
    layer16 = make_layer(half_safe, kwargs, weight, bias, dtype='float16')
    assert needs_fp32_accumulation(layer16.weight)
    got = forward_backward(layer16, x, dy, hybridize)
    want = forward_backward(make_layer(stock, kwargs, weight, bias), x, dy)
    magnitude = forward_backward(make_layer(stock, kwargs, np.abs(weight), np.abs(bias)),
                                 np.abs(x), np.abs(dy))
    factor = 3 * UNIT_ROUNDOFF + accumulation * FP32_EPS
    for label, a, b, m in zip(('y', 'dx', 'dweight', 'dbias'), got, want, magnitude):
        assert a.dtype == np.float16, '{} is {}, FP16 expected'.format(label, a.dtype)
        error = np.abs(a.astype(np.float64) - b)
        worst = float((error / (factor * m + 1e-30)).max())
        assert worst <= 1, '{} {}: error reaches {:.2f}x the bound (3u+K*2^-24)*|a||b|'.format(
            name, label, worst)
        if label != 'dbias':  # dbias = sum of FP16-exact dy: legitimately exact
            assert error.max() > 0, '{}: bit-identical to FP32, FP16 not exercised'.format(label)


def traced_ops(layer):
    out = layer(mx.sym.var('data'))
    return [n['op'] for n in json.loads(out.tojson())['nodes'] if n['op'] != 'null']


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_symbolic_trace_adds_casts_only_for_initialised_fp16_cpu_weights(name):
    half_safe, _, kwargs, _, _ = LAYERS[name]
    uninitialised = half_safe(**kwargs)
    uninitialised.cast('float16')
    assert 'Cast' not in traced_ops(uninitialised), 'no device known yet: no widening'
    fp32 = make_layer(half_safe, kwargs, *_shapes_only(name))
    assert 'Cast' not in traced_ops(fp32)
    fp16 = make_layer(half_safe, kwargs, *_shapes_only(name), dtype='float16')
    assert traced_ops(fp16).count('Cast') == 4  # x, weight, bias in; result out


def test_batchnorm_fp32_is_bit_identical_and_fp16_statistics_do_not_overflow():
    """MXNet's CPU BatchNorm sums FP16 squares in FP16: inf variance for |x| >~ 256."""
    rng = np.random.RandomState(0)
    x = (rng.normal(0, 1, (4, 3, 8, 8)) * 600).astype(np.float32)
    outs = {}
    for cls in (nn.BatchNorm, HalfSafeBatchNorm):
        for dtype in ('float32', 'float16'):
            bn = cls(in_channels=3, momentum=0.0)
            bn.initialize()
            bn.cast(dtype)
            with autograd.record():
                y = bn(mx.nd.array(x, dtype=dtype))
            y.backward()  # MXNet updates the running statistics with the backward pass
            outs[cls, dtype] = (y.asnumpy(), bn.running_var.data().asnumpy())
    np.testing.assert_array_equal(outs[HalfSafeBatchNorm, 'float32'][0],
                                  outs[nn.BatchNorm, 'float32'][0])
    y16, var16 = outs[HalfSafeBatchNorm, 'float16']
    assert y16.dtype == np.float16 and np.isfinite(var16).all()
    # Rounding x to FP16 moves each x by <= u|x|, the variance by <= ~2u relative; the
    # normalised output (|y| <= ~4) by <= u|y| from x and u|y| from rounding the result.
    y32, var32 = outs[nn.BatchNorm, 'float32']
    np.testing.assert_allclose(var16, var32, rtol=4 * UNIT_ROUNDOFF)
    np.testing.assert_allclose(y16, y32, atol=3 * UNIT_ROUNDOFF * np.abs(y32).max())
    assert not np.allclose(outs[nn.BatchNorm, 'float16'][0], y32, atol=0.1), \
        'stock FP16 BatchNorm now gets it right on CPU: HalfSafeBatchNorm may be unneeded'
    assert not np.isfinite(outs[nn.BatchNorm, 'float16'][1]).all(), \
        'stock FP16 BatchNorm no longer overflows on CPU: HalfSafeBatchNorm may be unneeded'
