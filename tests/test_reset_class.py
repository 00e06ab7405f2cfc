"""Fine-tuning on other classes: GluonCV's reset_class route on our FP16-safe networks.

GluonCV's own `test_yolo3_reset_class` (tests/unittests/test_model_zoo.py) builds
`yolo3_darknet53_voc` with pretrained weights, hybridizes it, calls `reset_class` with a
list and with a dict of names, and runs a non-square input. The same pattern runs here on
all nine names, offline (random weights instead of downloads), and also checks what
GluonCV's test does not: which rows were reused, and that the network stays FP16-safe.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from helpers import yolo_training_batch
from gluoncv_fp16.model_zoo import YOLO3_MODELS, build_untrained, dataset_classes, get_model
from gluoncv_fp16.model_zoo.yolo3 import FP32OutputConv2D
from gluoncv_fp16.train.checkpoint import structural_params

CUSTOM = ['person', 'cat', 'bus', 'car', 'bicycle', 'bird']  # what a *_custom net starts with here
X = mx.nd.random.uniform(shape=(1, 3, 64, 96), ctx=mx.cpu())  # non-square, as GluonCV's


def initialised(name):
    classes = CUSTOM if name.endswith('_custom') else None
    net = get_model(name, classes=classes, pretrained_base=False)
    net.initialize(mx.init.MSRAPrelu(factor_type='in', slope=0.0))
    net.hybridize()
    with autograd.predict_mode():
        net(X)
    return net


def prediction_rows(net):
    """Per output layer: (weight, bias) as numpy, rows = anchors x (5 + classes)."""
    return [(out.prediction.weight.data().asnumpy(), out.prediction.bias.data().asnumpy())
            for out in net.yolo_outputs]


def assert_rows_reused(before, after, old_classes, new_classes, reused):
    """Box/objectness rows and the `reused` classes' rows equal the old ones."""
    old_n, new_n = 5 + len(old_classes), 5 + len(new_classes)
    for (w0, b0), (w1, b1) in zip(before, after):
        assert w1.shape[0] == 3 * new_n
        for anchor in range(3):
            for name in reused:
                new_row = anchor * new_n + 5 + new_classes.index(name)
                old_row = anchor * old_n + 5 + old_classes.index(name)
                np.testing.assert_array_equal(w1[new_row], w0[old_row], err_msg=name)
                np.testing.assert_array_equal(b1[new_row], b0[old_row], err_msg=name)
            np.testing.assert_array_equal(w1[anchor * new_n:anchor * new_n + 5],
                                          w0[anchor * old_n:anchor * old_n + 5])


def detect(net, x):
    with autograd.predict_mode():
        ids, scores, boxes = net(x)
    mx.nd.waitall()
    return ids, scores, boxes


# darknet53 takes ~17 s each here: GluonCV's own network (darknet53_voc) runs by default,
# its coco/custom twins with -m slow.
ALL_NINE = [pytest.param(n, marks=pytest.mark.slow)
            if n.startswith('yolo3_darknet53') and n != 'yolo3_darknet53_voc' else n
            for n in YOLO3_MODELS]


@pytest.mark.parametrize('name', ALL_NINE)
def test_gluoncv_reset_class_pattern_on_all_nine_networks(name):
    test_classes = ['bird', 'bicycle', 'bus', 'car', 'cat']
    net = initialised(name)
    old = list(net.classes)
    before = prediction_rows(net)
    net.reset_class(['bus', 'car', 'bird'], reuse_weights=['bus', 'car', 'bird'])
    ids, scores, boxes = detect(net, X)
    assert net.classes == ['bus', 'car', 'bird'] and boxes.shape[-1] == 4
    assert ids.asnumpy().max() < 3
    assert all(isinstance(out.prediction, FP32OutputConv2D) for out in net.yolo_outputs)
    assert_rows_reused(before, prediction_rows(net), old, ['bus', 'car', 'bird'],
                       ['bus', 'car', 'bird'])

    net = initialised(name)
    before = prediction_rows(net)
    net.reset_class(test_classes, reuse_weights=dict(zip(test_classes, test_classes)))
    detect(net, X)
    reused = [c for c in test_classes if c in old]
    assert_rows_reused(before, prediction_rows(net), old, test_classes, reused)

    net.reset_class(['bus', 'car', 'bird'])  # no reuse: GluonCV's GPU variant
    detect(net, X)


def test_reset_class_keeps_an_fp16_network_fp16_and_trainable():
    net = initialised('yolo3_mobilenet0.25_voc')
    net.cast('float16')
    before = prediction_rows(net)
    net.reset_class(['dog', 'widget', 'cat'], reuse_weights=['dog', 'cat'])
    for out in net.yolo_outputs:
        assert np.dtype(out.prediction.weight.dtype) == np.float16
        assert np.dtype(out.anchors.dtype) == np.float32  # decode constants stay FP32
    assert_rows_reused(before, prediction_rows(net), dataset_classes('yolo3_mobilenet0.25_voc'),
                       ['dog', 'widget', 'cat'], ['dog', 'cat'])
    ids, scores, boxes = detect(net, X.astype('float16'))
    assert [a.dtype for a in (ids, scores, boxes)] == [np.float32] * 3
    assert np.isfinite(scores.asnumpy()).all()
    # Targets come from an FP32 twin (GluonCV's transform runs an FP32 forward).
    twin = get_model('yolo3_mobilenet0.25_custom', classes=['dog', 'widget', 'cat'],
                     pretrained_base=False)
    twin.initialize()
    image, gt, targets = yolo_training_batch(twin, size=64)
    net.hybridize()  # training signature differs from inference: re-cache
    with autograd.record():
        losses = net(image.astype('float16'), gt, *targets)
        total = sum(losses)
    total.backward()
    assert all(np.isfinite(loss.asnumpy()).all() for loss in losses)
    grad = net.yolo_outputs[0].prediction.weight.grad()
    assert grad.dtype == np.float16 and np.abs(grad.asnumpy()).sum() > 0


def test_label_smoothing_survives_reset_class():
    net = initialised('yolo3_mobilenet0.25_custom')
    net.set_label_smooth(True)
    net.reset_class(['a', 'b'])
    assert net._target_generator._label_smooth  # the one flag set_label_smooth owns


@pytest.mark.parametrize('name', YOLO3_MODELS)
def test_build_untrained_with_other_classes(name):
    net = build_untrained(name, classes=['circle', 'square'])
    assert net.classes == ['circle', 'square']
    net.initialize()
    ids, _, _ = detect(net, X)
    assert ids.shape == (1, 100, 1) and ids.asnumpy().max() < 2


def test_build_untrained_other_classes_has_the_named_networks_parameters():
    """Same architecture and parameter names as the named net, only the class rows differ."""
    ours = build_untrained('yolo3_mobilenet0.25_voc', classes=['circle', 'square'])
    plain = build_untrained('yolo3_mobilenet0.25_voc')
    shapes = []
    for net in (ours, plain):
        net.initialize()
        detect(net, X)
        shapes.append({k: v.shape for k, v in structural_params(net).items()})
    assert shapes[0].keys() == shapes[1].keys()
    differ = sorted(k for k in shapes[0] if shapes[0][k] != shapes[1][k])
    assert differ == ['yolo_outputs.{}.prediction.{}'.format(i, p) for i in range(3)
                      for p in ('bias', 'weight')]


def test_build_untrained_with_the_datasets_own_classes_is_the_named_net():
    voc = dataset_classes('yolo3_mobilenet0.25_voc')
    assert len(voc) == 20 and len(dataset_classes('yolo3_darknet53_coco')) == 80
    assert list(build_untrained('yolo3_mobilenet0.25_voc', classes=voc).classes) == voc
    with pytest.raises(ValueError, match='no fixed classes'):
        dataset_classes('yolo3_mobilenet0.25_custom')


def test_transfer_reuses_a_locally_cached_voc_model(tmp_path, monkeypatch):
    """get_model(custom, classes, transfer='voc') as GluonCV: VOC weights, shared classes
    kept. GluonCV's file lookup is pointed at a locally saved *_voc model (no download)."""
    import gluoncv.model_zoo.model_store as model_store
    voc = initialised('yolo3_mobilenet1.0_voc')
    path = str(tmp_path / 'yolo3_mobilenet1.0_voc-local.params')
    voc.save_parameters(path)
    asked = []
    monkeypatch.setattr(model_store, 'get_model_file',
                        lambda name, tag=None, root=None: asked.append(name) or path)
    classes = ['dog', 'widget', 'cat']
    net = get_model('yolo3_mobilenet1.0_custom', classes=classes, transfer='voc')
    assert asked == ['yolo3_mobilenet1.0_voc'] and net.classes == classes
    assert all(isinstance(out.prediction, FP32OutputConv2D) for out in net.yolo_outputs)
    assert_rows_reused(prediction_rows(voc), prediction_rows(net), list(voc.classes),
                       classes, ['dog', 'cat'])
    net.cast('float16')
    _, scores, _ = detect(net, X.astype('float16'))
    assert scores.dtype == np.float32
