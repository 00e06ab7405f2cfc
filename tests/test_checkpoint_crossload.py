""".params files move between FP32 and FP16 networks; wrong files fail whole and clearly.

A user trains in FP16 and evaluates in FP32, or fine-tunes GluonCV's FP32 weights in
FP16: `load_parameters` must cast in both directions by default (our subclass defaults
to cast_dtype=True, MXNet's Block does not). A file from another network or class count
must raise CheckpointError before anything is written into the network.
"""
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluoncv_fp16.train.checkpoint import structural_params
from gluoncv_fp16.model_zoo import CheckpointError, get_model

NAME = 'yolo3_mobilenet0.25_voc'
# Frozen identity BatchNorm + He init: the well-conditioned regime in which FP16 and FP32
# outputs can be compared (see test_fp16_agreement.py and docs/model_zoo.md).
SANE = {'pretrained_base': False, 'norm_kwargs': {'use_global_stats': True}}
# 2 sqrt(L) u with L = 48 convolutions on the deepest path of yolo3_mobilenet0.25
# (derivation in docs/model_zoo.md, "FP16 vs FP32 agreement").
FP16_TOLERANCE = 2 * math.sqrt(48) * 2.0 ** -11


def x64(dtype='float32'):
    return mx.nd.random.uniform(0, 1, shape=(2, 3, 64, 64), ctx=mx.cpu()).astype(dtype)


def raw_predictions(net, x):
    """Centre/scale/objectness/class logits (training-mode outputs, nothing recorded)."""
    with autograd.train_mode():
        outputs = net(x.astype(net.yolo_outputs[0].prediction.weight.dtype))
    return np.concatenate([o.asnumpy().ravel() for o in outputs[4:]])


def params_by_name(net):
    """Structural name -> numpy copy, as save_parameters names them."""
    return {k: v.asnumpy() for k, v in structural_params(net).items()}


def saved_net(tmp_path, dtype, name=NAME, **kwargs):
    """A materialised net in `dtype` and the path of its saved .params."""
    net = get_model(name, **dict(SANE, **kwargs))
    net.initialize(mx.init.MSRAPrelu(factor_type='in', slope=0.0))
    net(mx.nd.zeros((1, 3, 64, 64)))
    if dtype != 'float32':
        net.cast(dtype)
    path = str(tmp_path / '{}-{}.params'.format(name, dtype))
    net.save_parameters(path)
    return net, path


def relative_error(got, want):
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def assert_predictions_agree_to_fp16(dst, src, label):
    """`dst`'s raw predictions equal `src`'s within FP16 rounding, and not bit-exactly
    (one of the two really runs in FP16)."""
    x = x64()
    err = relative_error(raw_predictions(dst, x), raw_predictions(src, x))
    assert 0 < err <= FP16_TOLERANCE, '{} relative error {:.3g} (tolerance {:.3g})'.format(
        label, err, FP16_TOLERANCE)


def test_fp32_file_loads_into_fp16_net_as_if_cast(tmp_path):
    src, path = saved_net(tmp_path, 'float32')
    assert {np.dtype(a.dtype) for a in mx.nd.load(path).values()} == {np.dtype('float32')}
    dst = get_model(NAME, **SANE)
    dst.cast('float16')
    dst.load_parameters(path)  # no cast_dtype=True needed: our default
    want, got = params_by_name(src), params_by_name(dst)
    for name, value in got.items():
        norm_param = name.rsplit('.', 1)[-1] in ('gamma', 'beta', 'running_mean', 'running_var')
        fixed_fp32 = norm_param or name.endswith(('anchors', 'offsets'))
        assert value.dtype == (np.float32 if fixed_fp32 else np.float16), name
        np.testing.assert_array_equal(value, want[name].astype(value.dtype), err_msg=name)
    assert_predictions_agree_to_fp16(dst, src, 'FP16 vs FP32')


def test_fp16_file_loads_into_fp32_net_exactly(tmp_path):
    src, path = saved_net(tmp_path, 'float16')
    assert np.dtype('float16') in {np.dtype(a.dtype) for a in mx.nd.load(path).values()}
    dst = get_model(NAME, **SANE)
    dst.load_parameters(path)
    want = params_by_name(src)
    for name, value in params_by_name(dst).items():
        assert value.dtype == np.float32, name
        np.testing.assert_array_equal(value, want[name].astype(np.float32), err_msg=name)
    assert_predictions_agree_to_fp16(dst, src, 'FP32 vs FP16')


def test_get_model_pretrained_path_loads_the_local_file(tmp_path):
    src, path = saved_net(tmp_path, 'float16')
    net = get_model(NAME, pretrained=path, norm_kwargs={'use_global_stats': True})
    want = params_by_name(src)
    for name, value in params_by_name(net).items():
        np.testing.assert_array_equal(value, want[name].astype(value.dtype), err_msg=name)


def test_get_model_pretrained_missing_path_says_so(tmp_path):
    missing = str(tmp_path / 'nowhere.params')
    with pytest.raises(FileNotFoundError, match='nowhere.params'):
        get_model(NAME, pretrained=missing)


def test_other_class_count_raises_and_loads_nothing(tmp_path):
    _, path = saved_net(tmp_path, 'float32', name='yolo3_mobilenet0.25_coco')
    net, _ = saved_net(tmp_path, 'float32')
    before = params_by_name(net)
    with pytest.raises(CheckpointError) as info:
        net.load_parameters(path)
    message = str(info.value)
    assert path in message and 'the file predicts 80 classes, this network 20' in message
    assert 'reset_class' in message  # what to do instead
    after = params_by_name(net)
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert not changed, 'half-loaded: {} of {} parameters changed, e.g. {}'.format(
        len(changed), len(before), changed[:3])


def test_other_network_raises_with_the_differing_names(tmp_path):
    _, path = saved_net(tmp_path, 'float32')
    darknet = get_model('yolo3_darknet53_voc', pretrained_base=False)  # never initialised
    with pytest.raises(CheckpointError, match='missing from the file') as info:
        darknet.load_parameters(path)
    assert path in str(info.value) and 'stages.0' in str(info.value)
    with pytest.raises(RuntimeError, match='has not been initialized'):
        darknet.yolo_outputs[0].prediction.weight.data()  # nothing was loaded


def test_other_width_raises_on_the_first_differing_shape(tmp_path):
    _, path = saved_net(tmp_path, 'float32', name='yolo3_mobilenet1.0_voc')
    with pytest.raises(CheckpointError, match=r"'stages\.0\.0\.weight' is \(32, 3"):
        get_model(NAME, pretrained_base=False).load_parameters(path)


def test_a_file_that_is_not_parameters_is_a_mismatch(tmp_path):
    junk = tmp_path / 'junk.params'
    junk.write_bytes(b'not an ndarray file')
    with pytest.raises(CheckpointError, match='not an MXNet parameter file'):
        get_model(NAME, pretrained_base=False).load_parameters(str(junk))


def test_load_model_reads_a_plain_params_file_given_its_network(tmp_path):
    """The one loader (eval, export, demo, ``load_model``) takes a checkpoint, or a plain
    ``.params`` file with the network named; without the name it says what to pass."""
    from gluoncv_fp16.checkpoint import load_model, read_source
    from gluoncv_fp16.errors import SourceError
    net, path = saved_net(tmp_path, 'float32')
    loaded = load_model(path, network=NAME)
    want = params_by_name(net)
    got = params_by_name(loaded)
    assert got.keys() == want.keys()
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    x = x64()
    with autograd.predict_mode():  # inference: BatchNorm uses the loaded running statistics
        for a, b in zip(loaded(x), net(x)):
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    assert read_source(path, network=NAME).classes is None  # the dataset's (VOC's)
    with pytest.raises(SourceError, match='no model description.*--network'):
        load_model(path)


class _Loop:
    """What the run-state check reads of a training loop."""

    def __init__(self, net):
        from gluoncv_fp16.model_zoo.params import named_params
        self.param_names = named_params(net)
        self.hooks = []


def test_resume_checks_names_and_shapes_with_the_one_parameter_check(tmp_path):
    """A run state from another network fails whole with the same check as every other
    loader: names first, then the first differing shape."""
    from gluoncv_fp16.train.state import STATE_VERSION, RunState, check_compatible
    net, _ = saved_net(tmp_path, 'float32')
    weights = {k: v.copy() for k, v in structural_params(net).items()}
    meta = {'state_version': STATE_VERSION, 'phase': 'fp32'}
    check_compatible(RunState(weights, {}, meta), _Loop(net), "'a.ckpt'")
    first = next(iter(weights))
    fewer = {k: v for k, v in weights.items() if k != first}
    with pytest.raises(ValueError, match=r"'a.ckpt' does not match this network \(1 "
                                         r"parameters missing, 0 unexpected"):
        check_compatible(RunState(fewer, {}, meta), _Loop(net), "'a.ckpt'")
    reshaped = dict(weights, **{first: mx.nd.zeros((1,) + weights[first].shape)})
    with pytest.raises(ValueError, match="parameter '{}' has shape".format(first)):
        check_compatible(RunState(reshaped, {}, meta), _Loop(net), "'a.ckpt'")
