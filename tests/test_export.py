"""Export to symbol + params: same detections as the checkpoint, FP16 graphs type-check.

How the FP16 exports are run on a CPU-only machine: ``target='cpu'`` keeps the CPU
shim's FP32-widened convolutions, so it runs here and must match the checkpoint loaded
in FP16. The GPU export (``target='gpu'``, no widening) cannot run FP16 convolutions on
a CPU; it is checked by type inference (FP16 data in, FP32 out, no widening casts), by
having the same weights as the CPU export, and by running it with its parameters
widened to FP32, which must match the checkpoint's net with FP16-rounded weights.
"""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from helpers import MODEL_NAME, SHAPE_CLASSES as CLASSES, random_detector
from gluoncv_fp16.train.checkpoint import CheckpointError, load_model, save_checkpoint
from gluoncv_fp16.deploy.export import ExportError, export_detector, widened_convolutions

SIDE = 96

# SymbolBlock.imports cannot know the input dtype before the first call and says so;
# that is how MXNet imports every export, not something this package can change.
pytestmark = pytest.mark.filterwarnings("ignore:Cannot decide type:UserWarning")


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'model.ckpt')
    save_checkpoint(path, random_detector(),
                    meta={'model': {'name': MODEL_NAME, 'classes': CLASSES}})
    return path


@pytest.fixture(scope='module')
def images():
    return mx.nd.array(np.random.RandomState(1).uniform(-2, 2, size=(2, 3, SIDE, SIDE)))


def reference(path, x, dtype):
    net = load_model(path, dtype=dtype)
    with autograd.predict_mode():
        return [a.asnumpy() for a in net(x.astype(dtype))]


def run_import(files, x):
    block = mx.gluon.SymbolBlock.imports(files.symbol, ['data'], files.params)
    return [a.asnumpy() for a in block(x)]


def test_fp32_export_gives_the_checkpoints_detections(checkpoint, images, tmp_path):
    files = export_detector(checkpoint, str(tmp_path / 'm'), 'float32', data_shape=SIDE)
    got, want = run_import(files, images), reference(checkpoint, images, 'float32')
    assert np.std(want[1][want[0] >= 0]) > 1e-3, 'degenerate test net: all scores equal'
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_fp16_cpu_export_runs_here_and_matches_the_fp16_checkpoint(checkpoint, images,
                                                                    tmp_path):
    files = export_detector(checkpoint, str(tmp_path / 'm'), 'float16', target='cpu',
                            data_shape=SIDE)
    got = run_import(files, images.astype('float16'))
    want = reference(checkpoint, images, 'float16')
    assert [a.dtype for a in got] == [np.float32] * 3
    np.testing.assert_array_equal(got[0], want[0])
    for a, b in zip(got[1:], want[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)


@pytest.fixture(scope='module')
def fp16_exports(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp('fp16')
    return {target: export_detector(checkpoint, str(root / target), 'float16', target=target,
                                    data_shape=SIDE) for target in ('gpu', 'cpu')}


def test_fp16_gpu_symbol_has_fp16_input_fp32_outputs_and_no_widening(fp16_exports):
    gpu = mx.sym.load(fp16_exports['gpu'].symbol)
    cpu = mx.sym.load(fp16_exports['cpu'].symbol)
    arg_types, out_types, _ = gpu.infer_type()  # the input dtype is recorded in the graph
    assert dict(zip(gpu.list_arguments(), arg_types))['data'] == np.float16
    assert out_types == [np.float32] * 3
    with pytest.raises(mx.base.MXNetError):
        gpu.infer_type(data='float32')  # FP16 weights refuse FP32 data: it really is FP16
    nodes = json.loads(gpu.tojson())['nodes']
    num_convs = sum(1 for n in nodes if n['op'] == 'Convolution')
    assert widened_convolutions(gpu) == 0
    assert widened_convolutions(cpu) == num_convs


def test_fp16_export_keeps_norm_anchor_and_offset_params_fp32(fp16_exports):
    params = mx.nd.load(fp16_exports['gpu'].params)
    assert params.keys() == mx.nd.load(fp16_exports['cpu'].params).keys()
    fp32_kinds = ('_gamma', '_beta', '_running_mean', '_running_var', '_anchor_', '_offset_')
    for key, value in params.items():
        keep_fp32 = any(kind in key for kind in fp32_kinds)
        assert value.dtype == (np.float32 if keep_fp32 else np.float16), key


def test_fp16_gpu_export_computes_the_checkpoints_net(checkpoint, fp16_exports, images):
    block = mx.gluon.SymbolBlock.imports(fp16_exports['gpu'].symbol, ['data'],
                                         fp16_exports['gpu'].params)
    with pytest.raises(mx.base.MXNetError, match='FP16|not implemented'):
        block(images.astype('float16'))[0].asnumpy()  # no FP16 convolution on a CPU
    block.cast('float32')  # run the same graph with the FP16 weights widened
    x = images.astype('float16').astype('float32')
    got = [a.asnumpy() for a in block(x)]
    net = load_model(checkpoint)
    for param in net.collect_params().values():
        param.set_data(param.data().astype('float16').astype('float32'))
    with autograd.predict_mode():
        want = [a.asnumpy() for a in net(x)]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_plain_params_export_needs_and_uses_the_network_name(tmp_path, images):
    net = random_detector('yolo3_mobilenet0.25_voc', None)
    params = str(tmp_path / 'gluoncv_style.params')
    net.save_parameters(params)
    with pytest.raises(ExportError, match='--network'):
        export_detector(params, str(tmp_path / 'm'))
    files = export_detector(params, str(tmp_path / 'm'), network='yolo3_mobilenet0.25_voc',
                            data_shape=SIDE)
    with autograd.predict_mode():
        want = [a.asnumpy() for a in net(images)]
    for a, b in zip(run_import(files, images), want):
        np.testing.assert_array_equal(a, b)
    with open(files.meta) as f:
        assert json.load(f)['model']['classes'] == list(net.classes)
    with pytest.raises(CheckpointError, match='different network|another network'):
        export_detector(params, str(tmp_path / 'x'), network='yolo3_mobilenet1.0_voc')


@pytest.mark.parametrize('kwargs, message', [
    (dict(dtype='bfloat16'), 'dtype must be'), (dict(target='tpu'), 'target must be'),
    (dict(data_shape=100), 'multiple of 32'), (dict(network='yolo3_darknet53_voc'),
                                               "trained as '{}'".format(MODEL_NAME))])
def test_bad_arguments_say_what_was_received(checkpoint, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_detector(checkpoint, str(tmp_path / 'm'), **kwargs)
