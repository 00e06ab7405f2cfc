"""FP16 SyncBatchNorm: what MXNet's op rejects, and that ours syncs and trains in FP16.

Everything that runs the operator on two CPU contexts runs in a child process with a
timeout: a cross-device barrier that never completes must fail the test, not hang the
suite. The child is this file run as a script (see `_child_main`).

Tolerances. The FP16 layer widens its FP16 input exactly to FP32, so it and the FP32
reference see the same numbers; they differ by FP32 summation order (~1e-6 relative) and
by the final rounding of outputs and data gradients to FP16 (unit roundoff 2**-11 =
4.9e-4 of the value). Outputs / data gradients are compared with rtol 1e-3 (2x the unit
roundoff) plus atol 1e-3 for values near zero; FP32 gamma/beta gradients and running
statistics with rtol 1e-4. Without synchronisation the same comparison misses by > 0.5.
"""
import json
import logging
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

from helpers import ROOT, infer_output_dtypes, yolo_training_batch
from gluoncv_fp16.precision.syncbn import HalfSafeSyncBatchNorm, syncbn_kwargs

CHILD_TIMEOUT = 120  # s; the YOLO step takes ~6 s on 2 cores


def _params(block):
    return {k.split('_', 1)[-1]: v for k, v in block.collect_params().items()}


# ----- in-process: dtypes, the MXNet bug, validation ---------------------------------------
def test_stock_syncbn_accepts_fp16_in_type_inference_but_its_kernel_rejects_it():
    """MXNet issue 12257, precisely: InferType says yes, the real_t kernel says no."""
    data = mx.sym.var('data')
    op = mx.sym.contrib.SyncBatchNorm(data, mx.sym.var('g'), mx.sym.var('b'), ndev=1, key='k')
    _, out_types, aux_types = op.infer_type(data='float16')
    assert out_types == [np.float16] and aux_types == [np.float32, np.float32]
    stock = SyncBatchNorm(in_channels=3, num_devices=1)
    stock.initialize()
    stock.cast('float16')
    with pytest.raises(mx.base.MXNetError, match='data type do not match'), autograd.record():
        stock(mx.nd.ones((2, 3, 4, 4), dtype='float16')).asnumpy()


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('dtype', ['float16', 'float32'])
def test_output_has_input_dtype_and_parameters_stay_fp32(dtype, hybridize):
    layer = HalfSafeSyncBatchNorm(in_channels=3, num_devices=1)
    layer.initialize()
    layer.cast(dtype)
    if hybridize:
        layer.hybridize()
    x = mx.nd.random.normal(shape=(4, 3, 5, 5)).astype(dtype)
    x.attach_grad()
    with autograd.record():
        y = layer(x)
    y.backward()
    assert y.dtype == np.dtype(dtype) and x.grad.dtype == np.dtype(dtype)
    assert np.isfinite(y.asnumpy()).all()
    assert {np.dtype(p.dtype) for p in layer.collect_params().values()} == {np.dtype('float32')}


def test_single_device_matches_batchnorm_in_fp32():
    """With FP32 data the subclass adds no operator: MXNet's kernel, same numbers as BN."""
    x = mx.nd.random.normal(shape=(6, 4, 3, 3)) * 2 + 1
    outs = []
    for layer in (HalfSafeSyncBatchNorm(in_channels=4, num_devices=1),
                  nn.BatchNorm(in_channels=4)):
        layer.initialize()
        with autograd.record():
            outs.append(layer(x).asnumpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_parameter_names_are_those_of_batchnorm():
    """A --syncbn checkpoint has the keys of a plain one (both ways)."""
    from gluoncv_fp16.model_zoo import get_model
    plain = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)
    synced = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False, **syncbn_kwargs(2))
    layers = []
    synced.apply(lambda b: layers.append(b) if isinstance(b, HalfSafeSyncBatchNorm) else None)
    assert len(layers) > 40
    assert list(_params(synced)) == list(_params(plain))
    assert len({layer.prefix for layer in layers}) == len(layers), 'sync keys must be unique'


def test_training_forward_on_fewer_contexts_than_devices_raises_instead_of_hanging():
    layer = HalfSafeSyncBatchNorm(in_channels=3, num_devices=2)
    layer.initialize(ctx=mx.cpu(0))
    with pytest.raises(RuntimeError, match='num_devices=2 .* 1 context'), autograd.record():
        layer(mx.nd.ones((2, 3, 4, 4)))
    with autograd.predict_mode():  # inference does not synchronise: allowed
        assert layer(mx.nd.ones((2, 3, 4, 4))).shape == (2, 3, 4, 4)


def test_naive_engine_is_refused(monkeypatch):
    monkeypatch.setenv('MXNET_ENGINE_TYPE', 'NaiveEngine')
    with pytest.raises(RuntimeError, match='NaiveEngine'):
        HalfSafeSyncBatchNorm(num_devices=2)
    with pytest.raises(RuntimeError, match='NaiveEngine'):
        syncbn_kwargs(2)
    assert HalfSafeSyncBatchNorm(num_devices=1)  # nothing to wait for


@pytest.mark.parametrize('bad', [0, -1, 1.5, '2', True, None])
def test_syncbn_kwargs_rejects_bad_device_counts(bad):
    with pytest.raises(ValueError, match='num_devices must be a positive int'):
        syncbn_kwargs(bad)


def test_syncbn_kwargs_shapes():
    assert syncbn_kwargs(1) == {'norm_layer': nn.BatchNorm, 'norm_kwargs': {}}
    assert syncbn_kwargs(4, momentum=0.99) == {
        'norm_layer': HalfSafeSyncBatchNorm,
        'norm_kwargs': {'momentum': 0.99, 'num_devices': 4}}


def test_small_cpu_temp_pool_is_warned_about(monkeypatch, caplog):
    monkeypatch.setenv('MXNET_CPU_TEMP_COPY', '8')
    layer = HalfSafeSyncBatchNorm(in_channels=3, num_devices=2)
    layer.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    layer.hybridize()
    with caplog.at_level(logging.WARNING, logger='gluoncv_fp16.precision.syncbn'), \
            autograd.record():
        layer(mx.sym.var('data'))  # symbolic training trace: checks run, nothing executes
    assert 'MXNET_CPU_TEMP_COPY=8 may deadlock' in caplog.text


# ----- two CPU contexts, in a child process ---------------------------------------------
def run_child(case, out_dir, temp_copies=None):
    """Run `case` of this file in a fresh process; return its JSON / npz results path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.path.join(ROOT, 'tests'), os.environ.get('PYTHONPATH', '')]))
    if temp_copies:
        env['MXNET_CPU_TEMP_COPY'] = str(temp_copies)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), case, str(out_dir)],
                          env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out_dir


def test_fp16_syncbn_on_two_devices_equals_fp32_batchnorm_on_whole_batch(tmp_path):
    res = np.load(str(run_child('layer', tmp_path) / 'layer.npz'))
    ref_y, ref_gx = res['ref_y'], res['ref_gx']
    # Outputs and data gradients: FP16 rounding of the result (see module doc).
    np.testing.assert_allclose(res['y'], ref_y, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(res['gx'], ref_gx, rtol=1e-3, atol=1e-3)
    assert res['y'].dtype == np.float16 and res['gx'].dtype == np.float16
    # Per-device gamma/beta gradients sum (as the trainer's allreduce does) to BN's.
    for name in ('gamma_grad', 'beta_grad'):
        np.testing.assert_allclose(res[name].sum(axis=0), res['ref_' + name],
                                   rtol=1e-4, atol=1e-4)
    for name in ('running_mean', 'running_var'):
        for per_device in res[name]:  # both devices hold the same, global statistics
            np.testing.assert_allclose(per_device, res['ref_' + name], rtol=1e-4, atol=1e-5)
    # The check can fail: per-device (unsynchronised) BN is far from the reference.
    assert np.abs(res['local_y'] - ref_y).max() > 0.5


def test_fp16_yolo3_with_syncbn_type_checks_and_trains_on_two_cpu_contexts(tmp_path):
    result = json.loads((run_child('yolo', tmp_path, temp_copies=1024) /
                         'yolo.json').read_text())
    assert result['graph_output_dtypes'] == ['float32'] * 4
    assert result['loss_dtypes'] == ['float32'] * 4
    assert all(np.isfinite(result['losses'])), result['losses']
    assert result['weight_dtype'] == 'float16' and result['gamma_dtype'] == 'float32'
    assert result['weight_changed'] and result['running_mean_changed']
    # SyncBN leaves both devices with the same (global) running statistics.
    assert result['running_mean_devices_equal']


# ----- child-process cases ----------------------------------------------------------------
CTXS = (mx.cpu(0), mx.cpu(1))


def _child_layer(out_dir):
    rng = np.random.RandomState(0)
    # The two halves have different statistics, so per-device BN differs from global BN.
    x = np.concatenate([rng.randn(4, 3, 5, 5) * 3 + 2, rng.randn(4, 3, 5, 5) - 4])
    x = x.astype('float16')
    head = rng.randn(*x.shape).astype('float16')
    layer = HalfSafeSyncBatchNorm(in_channels=3, num_devices=2)
    layer.initialize(ctx=list(CTXS))
    layer.cast('float16')
    layer.hybridize()
    xs = [mx.nd.array(x[4 * i:4 * i + 4], ctx=c, dtype='float16') for i, c in enumerate(CTXS)]
    for part in xs:
        part.attach_grad()
    with autograd.record():
        ys = [layer(part) for part in xs]
    autograd.backward(ys, [mx.nd.array(head[4 * i:4 * i + 4], ctx=c, dtype='float16')
                           for i, c in enumerate(CTXS)])
    params = _params(layer)
    ref = _fp32_batchnorm(x, head)
    np.savez(os.path.join(out_dir, 'layer.npz'),
             y=np.concatenate([y.asnumpy() for y in ys]),
             gx=np.concatenate([part.grad.asnumpy() for part in xs]),
             gamma_grad=np.stack([params['gamma'].grad(c).asnumpy() for c in CTXS]),
             beta_grad=np.stack([params['beta'].grad(c).asnumpy() for c in CTXS]),
             running_mean=np.stack([params['running_mean'].data(c).asnumpy() for c in CTXS]),
             running_var=np.stack([params['running_var'].data(c).asnumpy() for c in CTXS]),
             local_y=np.concatenate([_fp32_batchnorm(x[:4], head[:4])['ref_y'],
                                     _fp32_batchnorm(x[4:], head[4:])['ref_y']]),
             **ref)


def _fp32_batchnorm(x, head):
    """The reference: MXNet's FP32 BatchNorm on the batch as one device sees it."""
    layer = nn.BatchNorm(in_channels=x.shape[1])
    layer.initialize()
    data = mx.nd.array(x.astype('float32'))
    data.attach_grad()
    with autograd.record():
        y = layer(data)
    y.backward(mx.nd.array(head.astype('float32')))
    params = _params(layer)
    return {'ref_y': y.asnumpy(), 'ref_gx': data.grad.asnumpy(),
            'ref_gamma_grad': params['gamma'].grad().asnumpy(),
            'ref_beta_grad': params['beta'].grad().asnumpy(),
            'ref_running_mean': params['running_mean'].data().asnumpy(),
            'ref_running_var': params['running_var'].data().asnumpy()}


def _child_yolo(out_dir):
    from mxnet import gluon
    from gluoncv_fp16.model_zoo import get_model
    name = 'yolo3_mobilenet0.25_voc'
    net = get_model(name, pretrained_base=False, **syncbn_kwargs(len(CTXS)))
    graph_types = [np.dtype(t).name for t in _fp16_graph_types(net, infer_output_dtypes)]
    # The data transform's FP32 fake forward needs a net without SyncBN (one device).
    plain = get_model(name, pretrained_base=False)
    plain.initialize()
    image, gt, targets = yolo_training_batch(plain, batch=4)
    net.initialize(ctx=list(CTXS))
    net.cast('float16')
    with autograd.predict_mode():  # an unsynchronised forward ends deferred initialisation
        net(image[:1].astype('float16'))
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': 1e-3, 'momentum': 0.9, 'multi_precision': True})
    params = _params(net)
    weight, mean = params['conv0_weight'], params['batchnorm0_running_mean']
    before = weight.data(CTXS[0]).asnumpy().copy(), mean.data(CTXS[0]).asnumpy().copy()
    split = [gluon.utils.split_and_load(a, CTXS) for a in [image.astype('float16'), gt,
                                                             *targets]]
    with autograd.record():
        outs = [net(*[a[i] for a in split]) for i in range(len(CTXS))]
        totals = [mx.nd.add_n(*[loss.sum() for loss in out]) for out in outs]
    autograd.backward(totals)
    trainer.step(image.shape[0])
    means = [mean.data(c).asnumpy() for c in CTXS]
    result = {
        'graph_output_dtypes': graph_types,
        'loss_dtypes': [np.dtype(loss.dtype).name for loss in outs[0]],
        'losses': [float(loss.sum().asscalar()) for out in outs for loss in out],
        'weight_dtype': np.dtype(weight.dtype).name,
        'gamma_dtype': np.dtype(params['batchnorm0_gamma'].dtype).name,
        'weight_changed': bool(not np.array_equal(weight.data(CTXS[0]).asnumpy(), before[0])),
        'running_mean_changed': bool(not np.array_equal(means[0], before[1])),
        'running_mean_devices_equal': bool(np.allclose(means[0], means[1], rtol=1e-5)),
    }
    with open(os.path.join(out_dir, 'yolo.json'), 'w') as f:
        json.dump(result, f)


def _fp16_graph_types(net, infer_output_dtypes):
    net.cast('float16')
    types = infer_output_dtypes(net, training=True)
    net.cast('float32')
    return types


def _child_main(case, out_dir):
    np.random.seed(0)
    mx.random.seed(0)
    {'layer': _child_layer, 'yolo': _child_yolo}[case](out_dir)
    mx.nd.waitall()


if __name__ == '__main__':
    _child_main(sys.argv[1], sys.argv[2])
