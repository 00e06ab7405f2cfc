"""Vectorised YOLOv3 targets against GluonCV's YOLOV3PrefetchTargetGenerator."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from gluoncv.model_zoo.yolo.yolo_target import YOLOV3PrefetchTargetGenerator

from gluoncv_fp16.data.targets import YOLOGeometry, yolo3_targets
from gluoncv_fp16.model_zoo import get_model


def gluoncv_reference(net, width, height):
    """GluonCV's own way: a fake FP32 forward, then its target generator."""
    fake_x = mx.nd.zeros((1, 3, height, width))
    with autograd.train_mode():
        _, anchors, offsets, feat_maps, _, _, _, _ = net(fake_x)
    generator = YOLOV3PrefetchTargetGenerator(num_class=len(net.classes))

    def targets(boxes, ids, mix=None):
        mix = None if mix is None else mx.nd.array(mix[None, :, None])
        out = generator(fake_x, feat_maps, anchors, offsets, mx.nd.array(boxes[None]),
                        mx.nd.array(ids[None, :, None]), mix)
        return [o[0].asnumpy() for o in out]
    return targets, feat_maps


def random_boxes(rs, width, height, count):
    """Boxes of all sizes, some on the borders, some tiny, some duplicated (collisions)."""
    x0, y0 = rs.uniform(0, width - 1, count), rs.uniform(0, height - 1, count)
    x1 = np.minimum(x0 + rs.exponential(width / 4, count) + 0.01, width)
    y1 = np.minimum(y0 + rs.exponential(height / 4, count) + 0.01, height)
    boxes = np.stack([x0, y0, x1, y1], axis=1)
    boxes[::5, :2] = 0                       # top-left corner boxes
    boxes[1::7, 2:] = (width, height)        # touching the bottom-right border
    boxes[2::6, 2:] = boxes[2::6, :2] + 0.3  # tiny (under one pixel)
    boxes[3::9] = boxes[0]                   # same cell and anchor: later box wins
    return boxes.astype(np.float32)


@pytest.mark.parametrize('width,height', [(96, 96), (160, 64), (100, 130)])
def test_targets_equal_gluoncv(net, width, height):
    reference, _ = gluoncv_reference(net, width, height)
    geometry = YOLOGeometry.from_net(net, width, height)
    rs = np.random.RandomState(width + height)
    for count in [1, 2, 5, 13, 40]:
        for _ in range(4):
            boxes = random_boxes(rs, width, height, count)
            ids = rs.randint(0, len(net.classes), count).astype(np.float32)
            mix = rs.uniform(0.2, 1.0, count).astype(np.float32) if count % 2 else None
            expected = reference(boxes, ids, mix)
            got = yolo3_targets(geometry, boxes, ids, len(net.classes), mix)
            for name, e, g in zip(['obj', 'center', 'scale', 'weight', 'class'],
                                  expected, got):
                assert g.shape == e.shape and g.dtype == np.float32, name
                np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6, err_msg=name)


def test_padding_rows_stop_assignment_like_gluoncv(net):
    reference, _ = gluoncv_reference(net, 96, 96)
    geometry = YOLOGeometry.from_net(net, 96, 96)
    boxes = np.array([[10, 10, 50, 60], [-1, -1, -1, -1], [5, 5, 90, 90]], np.float32)
    ids = np.array([1, -1, 2], np.float32)
    expected = reference(boxes, ids)
    got = yolo3_targets(geometry, boxes, ids, len(net.classes))
    assert got[0].sum() == 1  # only the box before the padding row
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)


def test_no_boxes_gives_ignore_everywhere(net):
    geometry = YOLOGeometry.from_net(net, 64, 64)
    obj, centers, scales, weights, clas = yolo3_targets(
        geometry, np.zeros((0, 4)), np.zeros(0), 20)
    assert obj.shape == (geometry.num_rows, 1) and not obj.any() and not weights.any()
    assert (clas == -1).all()


@pytest.mark.parametrize('width,height', [(64, 64), (100, 130)])
def test_geometry_matches_the_fake_forward(net, width, height):
    _, feat_maps = gluoncv_reference(net, width, height)
    geometry = YOLOGeometry.from_net(net, width, height)
    assert [(l.height, l.width) for l in geometry.layers] == \
        [tuple(f.shape[2:]) for f in feat_maps]
    assert geometry.num_rows == sum(f.shape[2] * f.shape[3] * 3 for f in feat_maps)


def test_geometry_of_fp16_cast_darknet_reads_fp32_anchors():
    net = get_model('yolo3_darknet53_voc', pretrained_base=False)
    net.initialize()
    net.cast('float16')
    geometry = YOLOGeometry.from_net(net, 320, 320)
    assert geometry.all_anchors.dtype == np.float32
    assert geometry.all_anchors[0].tolist() == [116, 90]
    assert [(l.height, l.width) for l in geometry.layers] == [(10, 10), (20, 20), (40, 40)]


def test_geometry_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match='match'):
        YOLOGeometry([np.ones((3, 2))], [(4, 4), (8, 8)], 64, 64)
