"""The fast YOLOv3 transforms against GluonCV's own, decision for decision."""
import random

import cv2
import mxnet as mx
import numpy as np
import pytest
from gluoncv.data.transforms.presets.yolo import (YOLO3DefaultTrainTransform,
                                                  YOLO3DefaultValTransform)

from gluoncv_fp16.data.augment import (Decisions, GeneratorSource, GluonCVRandomSource,
                                       apply_to_image, draw_decisions, identity_decisions)
from gluoncv_fp16.data.color import ColorJitter
from gluoncv_fp16.data.transforms import YOLO3FastTrainTransform, YOLO3FastValTransform
from gluoncv_fp16.model_zoo import get_model


def random_sample(rs, max_boxes=6, kind='mixed'):
    """A random image (H, W in 40..160) and boxes of the requested kind."""
    h, w = rs.randint(40, 161, size=2)
    img = rs.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    n = rs.randint(1, max_boxes + 1)
    x0, y0 = rs.uniform(0, w - 2, n), rs.uniform(0, h - 2, n)
    if kind == 'tiny':
        x1, y1 = x0 + rs.uniform(0.05, 2, n), y0 + rs.uniform(0.05, 2, n)
    else:
        x1 = np.minimum(x0 + rs.uniform(1, w, n), w)
        y1 = np.minimum(y0 + rs.uniform(1, h, n), h)
    if kind == 'border':  # snap some edges onto the image border
        x0[::2], y0[1::2], x1[1::2], y1[::2] = 0, 0, w, h
    label = np.stack([x0, y0, x1, y1, rs.randint(0, 20, n)], axis=1)
    return img, label.astype(np.float32)


def run_both(gluoncv_t, fast_t, img, label, seed):
    np.random.seed(seed)
    random.seed(seed)
    expected = [a.asnumpy() if isinstance(a, mx.nd.NDArray) else a
                for a in gluoncv_t(mx.nd.array(img, dtype='uint8'), label)]
    np.random.seed(seed)
    random.seed(seed)
    got = fast_t.apply(img, label, rng=GluonCVRandomSource())
    return expected, got


@pytest.mark.parametrize('kind,max_boxes', [('mixed', 6), ('border', 6), ('tiny', 4),
                                            ('mixed', 60)])
def test_same_decisions_give_gluoncv_outputs(net, kind, max_boxes):
    size = (128, 96)
    gluoncv_t = YOLO3DefaultTrainTransform(*size, net)
    fast_t = YOLO3FastTrainTransform(*size, net)
    rs = np.random.RandomState(len(kind) * 100 + max_boxes)
    for trial in range(25):
        img, label = random_sample(rs, max_boxes, kind)
        expected, got = run_both(gluoncv_t, fast_t, img, label, seed=trial)
        assert len(got) == len(expected) == 7
        np.testing.assert_allclose(got[0], expected[0], atol=2e-4, err_msg='image')
        for name, e, g in zip(['obj', 'center', 'scale', 'weight', 'class', 'gt'],
                              expected[1:], got[1:]):
            assert g.shape == e.shape, name
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=name)


def test_mixup_weight_becomes_objectness(net):
    gluoncv_t = YOLO3DefaultTrainTransform(96, 96, net, mixup=True)
    fast_t = YOLO3FastTrainTransform(96, 96, net, mixup=True)
    rs = np.random.RandomState(5)
    positives = 0
    for trial in range(15):
        img, label = random_sample(rs, 5)
        label = np.hstack([label, rs.uniform(0.1, 0.9, (len(label), 1))]).astype(np.float32)
        expected, got = run_both(gluoncv_t, fast_t, img, label, seed=trial)
        for e, g in zip(expected[1:], got[1:]):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        positives += int(((got[1] > 0) & (got[1] < 1)).sum())
    assert positives > 0  # the weights really came through as fractional objectness


def test_without_net_returns_image_and_all_label_columns():
    gluoncv_t = YOLO3DefaultTrainTransform(64, 80)
    fast_t = YOLO3FastTrainTransform(64, 80)
    rs = np.random.RandomState(2)
    for trial in range(10):
        img, label = random_sample(rs, 4)
        label = np.hstack([label, np.ones((len(label), 1), np.float32)])  # 'difficult'
        expected, got = run_both(gluoncv_t, fast_t, img, label, seed=trial)
        assert len(got) == 2 and got[1].shape[1] == 6
        np.testing.assert_allclose(got[0], expected[0], atol=2e-4)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-6, atol=1e-4)


def test_drop_in_call_returns_ndarrays_like_gluoncv(net):
    rs = np.random.RandomState(0)
    img, label = random_sample(rs)
    expected = YOLO3DefaultTrainTransform(96, 96, net)(mx.nd.array(img, dtype='uint8'), label)
    got = YOLO3FastTrainTransform(96, 96, net, seed=1)(mx.nd.array(img, dtype='uint8'), label)
    assert all(isinstance(a, mx.nd.NDArray) for a in got)
    assert [a.shape[1:] for a in got[:-1]] == [a.shape[1:] for a in expected[:-1]]
    assert [a.dtype for a in got] == [a.dtype for a in expected]
    assert got[0].context == mx.cpu()
    no_net = YOLO3FastTrainTransform(96, 96)(img, label)
    assert isinstance(no_net[0], mx.nd.NDArray) and isinstance(no_net[1], np.ndarray)


def test_fp16_cast_net_gives_the_same_targets(net):
    rs = np.random.RandomState(3)
    img, label = random_sample(rs, 8)
    fp32 = YOLO3FastTrainTransform(96, 128, net).apply(img, label, rng=np.random.default_rng(4))
    half = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)
    half.initialize()
    half.cast('float16')
    fp16 = YOLO3FastTrainTransform(96, 128, half).apply(img, label,
                                                       rng=np.random.default_rng(4))
    for a, b in zip(fp32, fp16):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_generator_randomness_is_reproducible_and_varies(net):
    t = YOLO3FastTrainTransform(96, 96, net)
    img, label = random_sample(np.random.RandomState(9), 4)
    a = t.apply(img, label, rng=np.random.default_rng([1, 2, 3]))
    b = t.apply(img, label, rng=np.random.default_rng([1, 2, 3]))
    c = t.apply(img, label, rng=np.random.default_rng([1, 2, 4]))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_val_transform_matches_gluoncv():
    rs = np.random.RandomState(4)
    for size in [(64, 64), (160, 96)]:
        img, label = random_sample(rs, 5)
        expected = YOLO3DefaultValTransform(*size)(mx.nd.array(img, dtype='uint8'), label)
        got = YOLO3FastValTransform(*size)(img, label)
        assert isinstance(got[0], mx.nd.NDArray) and isinstance(got[1], np.ndarray)
        np.testing.assert_allclose(got[0].asnumpy(), expected[0].asnumpy(), atol=1e-5)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)


def test_augment_false_is_plain_resize(net):
    img, label = random_sample(np.random.RandomState(6), 5)
    t = YOLO3FastTrainTransform(128, 96, net, augment=False)
    out = t.apply(img, label, rng=np.random.default_rng(0))
    again = t.apply(img, label, rng=np.random.default_rng(99))
    val_img, val_label = YOLO3FastValTransform(128, 96).apply(img, label)
    np.testing.assert_array_equal(out[0], again[0])
    np.testing.assert_array_equal(out[0], val_img)
    np.testing.assert_allclose(out[-1], val_label[:, :4], rtol=1e-6)


def test_bad_arguments_raise_clear_errors(net):
    with pytest.raises(ValueError, match='std'):
        YOLO3FastTrainTransform(64, 64, net, std=(0.2, 0.0, 0.2))
    with pytest.raises(TypeError, match='YOLOv3'):
        YOLO3FastTrainTransform(64, 64, mx.gluon.nn.Dense(3))
    with pytest.raises(ValueError, match=r'\(N, 5\+\)'):
        YOLO3FastTrainTransform(64, 64).apply(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 4)))


def test_identity_decisions_keep_boxes_in_place(net):
    img, label = random_sample(np.random.RandomState(8), 3)
    h, w = img.shape[:2]
    t = YOLO3FastTrainTransform(w, h, net)
    out = t.apply(img, label, decisions=identity_decisions())
    np.testing.assert_allclose(out[-1], label[:, :4], rtol=1e-6)


def padded_canvas_reference(img, d, size, mean, std):
    """The whole expanded crop built and resized, as GluonCV does (colour map fused)."""
    m = np.asarray(mean) * 255
    s = np.asarray(std) * 255
    off_x, off_y, canvas_w, canvas_h = d.expand
    canvas = np.zeros((canvas_h, canvas_w, 3), np.float32)
    mat, off = d.color.affine()
    colour = img.astype(np.float64) @ mat.T + off
    canvas[off_y:off_y + img.shape[0], off_x:off_x + img.shape[1]] = (colour - m) / s
    x0, y0, w, h = d.crop
    out = cv2.resize(canvas[y0:y0 + h, x0:x0 + w], size, interpolation=d.interp)
    return (out[:, ::-1] if d.flip else out).transpose(2, 0, 1)


@pytest.mark.parametrize('interp', range(5))
def test_cut_and_mirrored_canvas_equals_the_whole_canvas(interp):
    """Cutting the fill after the image and mirroring change floats by rounding only."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rs = np.random.RandomState(interp)
    for trial in range(12):
        h, w = rs.randint(20, 90, size=2)
        img = rs.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
        boxes = np.array([[0, 0, w, h, 0]], np.float32)
        d = draw_decisions(GeneratorSource(np.random.default_rng([interp, trial])), w, h,
                           boxes, max_expand=6.0)
        expand, crop = d.expand, d.crop
        if expand is None:  # always expanded: fill before and after the image
            expand, crop = (w, h // 2, 3 * w, 2 * h), (w // 3, 0, 2 * w, 2 * h)
        d = Decisions(d.color if trial % 3 else ColorJitter(), expand, crop, True, interp,
                      d.flip)
        for size in [(64, 48), (37, 90), (200, 150)]:
            got = apply_to_image(img, d, size, mean, std)
            np.testing.assert_allclose(got, padded_canvas_reference(img, d, size, mean, std),
                                       atol=2e-5, err_msg=str((d, size)))
