"""All nine YOLOv3 names survive cast('float16'); stock GluonCV does not."""
import gluoncv
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from helpers import infer_output_dtypes, yolo_training_batch
from gluoncv_fp16.model_zoo import YOLO3_MODELS, get_model, get_model_list
from gluoncv_fp16.precision.cpu_half import make_half_safe

def build(name, module=None, **kwargs):
    """A model by name from `module` (ours by default), untrained, without downloads."""
    kwargs.setdefault('pretrained_base', False)
    if name.endswith('_custom'):
        kwargs.setdefault('classes', ['circle', 'square', 'triangle'])
    return (module or get_model)(name, **kwargs)


def test_model_list_is_the_nine_gluoncv_yolo3_names():
    assert sorted(get_model_list()) == sorted(
        n for n in gluoncv.model_zoo.get_model_list() if n.startswith('yolo3_'))
    assert len(get_model_list()) == 9


@pytest.mark.parametrize('name', YOLO3_MODELS)
def test_fp16_graphs_type_check_with_fp32_outputs(name):
    net = build(name)
    net.cast('float16')
    assert infer_output_dtypes(net, training=True) == [np.dtype('float32')] * 4
    assert infer_output_dtypes(net, training=False) == [np.dtype('float32')] * 3


@pytest.mark.parametrize('name', YOLO3_MODELS)
def test_fp16_training_step_on_cpu_gives_finite_fp32_losses(name):
    net = build(name)
    net.initialize()
    image, gt, targets = yolo_training_batch(net)
    net.cast('float16')
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 1e-3, 'momentum': 0.9, 'multi_precision': True})
    conv_w = net.yolo_outputs[0].prediction.weight
    before = conv_w.data().asnumpy().copy()
    with autograd.record():
        losses = net(image.astype('float16'), gt, *targets)
        total = mx.nd.add_n(*[loss.sum() for loss in losses])
    total.backward()
    trainer.step(image.shape[0])
    assert [loss.dtype for loss in losses] == [np.float32] * 4
    assert all(np.isfinite(loss.asnumpy()).all() for loss in losses)
    assert conv_w.data().dtype == np.float16
    assert not np.array_equal(conv_w.data().asnumpy(), before), 'SGD step changed nothing'
    bn_gamma = [p for n, p in net.collect_params().items() if n.endswith('gamma')][0]
    assert bn_gamma.data().dtype == np.float32
    net.hybridize()  # a new call signature (inference) needs a fresh cached graph
    ids, scores, boxes = net(image.astype('float16'))
    assert (ids.dtype, scores.dtype, boxes.dtype) == (np.float32,) * 3
    # Untrained boxes may be huge (exp of unnormalised logits, FP32 too); scores are bounded.
    # NMS marks removed rows with -1.
    assert np.isfinite(scores.asnumpy()).all() and scores.asnumpy().max() <= 1


def test_stock_gluoncv_fp16_training_graph_fails_type_inference():
    """What the package fixes: stock YOLOv3 cannot even type-check in FP16."""
    net = build('yolo3_mobilenet0.25_voc', module=gluoncv.model_zoo.get_model)
    net.cast('float16')
    with pytest.raises(mx.base.MXNetError, match='float16|float32'):
        infer_output_dtypes(net, training=True)


def test_stock_gluoncv_fp16_step_fails_even_with_cpu_convolutions_fixed():
    """The stock step fails on the decode/loss dtypes, not only on CPU convolutions."""
    net = build('yolo3_mobilenet0.25_voc', module=gluoncv.model_zoo.get_model)
    net.initialize()
    image, gt, targets = yolo_training_batch(net)
    make_half_safe(net)
    net.cast('float16')
    net.hybridize()
    with pytest.raises(mx.base.MXNetError, match='float16|float32'):
        with autograd.record():
            losses = net(image.astype('float16'), gt, *targets)
        mx.nd.waitall()
        losses[0].asnumpy()


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean: 'yolo3_darknet53_voc'"):
        get_model('yolo3_darknet53_vcc')


def test_other_gluoncv_names_pass_through_unchanged():
    net = get_model('ssd_300_vgg16_atrous_voc', pretrained_base=False)
    assert type(net) is gluoncv.model_zoo.SSD


def test_custom_without_classes_says_what_to_pass():
    with pytest.raises(ValueError, match='needs classes='):
        get_model('yolo3_mobilenet0.25_custom', pretrained_base=False)


def test_none_kwargs_do_not_override_gluoncv_defaults():
    net = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False, norm_layer=None,
                    norm_kwargs=None)
    assert len(net.classes) == 20
