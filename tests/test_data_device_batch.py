"""Packed batches (uint8 image, assigned target rows) unpacked on the device.

The dense targets rebuilt from the assigned rows must be bit-identical to the transform's
dense targets; the uint8 image may differ from the float32 image only by rounding the
augmented pixel (0.5 / 255 / std in normalised units) or by clipping it to [0, 255].
"""
import gc
import time
import weakref

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluoncv_fp16.data import device_batch
from gluoncv_fp16.data.augment import identity_decisions
from gluoncv_fp16.data.batchify import pad_stack
from gluoncv_fp16.data.datasets import build_datasets
from gluoncv_fp16.data.device_batch import (ASSIGNED_ROWS, expand_targets, pack_targets,
                                            to_devices, unpack)
from gluoncv_fp16.data.loader import make_train_loader, mixup_sample
from gluoncv_fp16.data.sampling import sample_rng
from gluoncv_fp16.data.targets import YOLOGeometry, yolo3_assigned, yolo3_targets
from gluoncv_fp16.data.transforms import YOLO3FastTrainTransform, to_uint8_chw
from gluoncv_fp16.model_zoo import get_model

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
DARKNET_ANCHORS = [[[116, 90], [156, 198], [373, 326]], [[30, 61], [62, 45], [59, 119]],
                   [[10, 13], [16, 30], [33, 23]]]
# (anchors per layer, feature maps, input width and height, classes)
LAYOUTS = {
    'darknet53 at 416': (DARKNET_ANCHORS, [(13, 13), (26, 26), (52, 52)], 416, 416, 20),
    'darknet53 at 320x608': (DARKNET_ANCHORS, [(19, 10), (38, 20), (76, 40)], 320, 608, 80),
    'two layers of four': ([[[80, 70], [40, 90], [120, 30], [60, 60]],
                            [[8, 9], [20, 12], [14, 28], [30, 30]]], [(5, 7), (10, 14)],
                           224, 160, 3),
}


@pytest.fixture(scope='module')
def train_set(synthetic_root):
    return build_datasets('custom', root=synthetic_root)[0]


def random_image_boxes(rs, width, height):
    """Boxes of all sizes, collisions, a padding row now and then, sometimes none."""
    count = rs.choice([0, 1, 3, 12, 60])
    x0, y0 = rs.uniform(0, width - 1, count), rs.uniform(0, height - 1, count)
    boxes = np.stack([x0, y0, np.minimum(x0 + rs.exponential(width / 4, count), width),
                      np.minimum(y0 + rs.exponential(height / 4, count), height)], axis=1)
    if count > 3:
        boxes[3::4] = boxes[0]  # same cell and anchor: the later box wins
        boxes[-2] = -1 if rs.rand() < 0.5 else boxes[-2]  # padding stops the assignment
    return boxes.astype(np.float32), rs.randint(0, 3, count).astype(np.float32)


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_expanded_targets_are_bit_identical_to_the_dense_targets(layout):
    anchors, features, width, height, classes = LAYOUTS[layout]
    geometry = YOLOGeometry(anchors, features, width, height)
    rs = np.random.RandomState(len(layout))
    for batch_number in range(4):
        dense, assigned = [], []
        for _ in range(3):
            boxes, ids = random_image_boxes(rs, width, height)
            ids = ids % classes
            mix = rs.uniform(0, 1, len(boxes)).astype(np.float32) if batch_number % 2 else None
            dense.append(yolo3_targets(geometry, boxes, ids, classes, mix))
            assigned.append(pack_targets(yolo3_assigned(geometry, boxes, ids, mix),
                                         geometry.num_rows, classes, MEAN, STD))
        # padded as the loader pads, and to the batch's longest image
        longest = [np.zeros((1 + ASSIGNED_ROWS, 8), np.float32)]
        for rows in (pad_stack(assigned + longest, pad_val=0)[:3],
                     pad_stack(assigned, pad_val=0)):
            got = expand_targets(mx.nd.array(rows), geometry.num_rows, classes)
            for k, g in enumerate(got):
                expected = np.stack([d[k] for d in dense])
                assert g.dtype == np.float32 and g.shape == expected.shape
                assert g.asnumpy().tobytes() == expected.tobytes(), (layout, k)
    assert (expected[..., 0] == -1).any()  # some rows are unassigned


def test_assigned_rows_are_few_and_refuse_rows_float32_cannot_index():
    geometry = YOLOGeometry(*LAYOUTS['darknet53 at 416'][:4])
    boxes = np.array([[10, 10, 50, 60], [10, 10, 50, 60], [5, 5, 400, 300]], np.float32)
    rows = yolo3_assigned(geometry, boxes, np.array([1, 2, 0]))
    assert rows.shape == (2, 8) and rows.dtype == np.float32  # the duplicate box collides
    assert (np.diff(rows[:, 0]) > 0).all()
    huge = YOLOGeometry([[[10, 10]]], [(4097, 4097)], 4097 * 32, 4097 * 32)
    with pytest.raises(ValueError, match='2\\*\\*24'):
        yolo3_assigned(huge, boxes, np.zeros(3))


def test_uint8_conversion_rounds_half_to_even_and_clips():
    values = np.array([[-3.2, -0.5, 0.49, 0.5, 1.5, 2.5, 254.5, 255.4, 300]], np.float32)
    image = np.stack([values, values - 0.25, values + 0.25])
    got = to_uint8_chw(image, (0.0, 0.25, -0.25))
    expected = np.clip(np.rint(values.astype(np.float64)), 0, 255)
    for plane in got:
        np.testing.assert_array_equal(plane, expected)


def _image_bound(dense_image, packed_image, unpacked=None):
    """(worst |difference| of the unpacked image in grey levels where the float pixel lies
    inside [0, 255], the number of pixels outside, the worst |packed - clipped pixel|)."""
    std, mean = STD[:, None, None] * 255, MEAN[:, None, None] * 255
    pixel = dense_image * std + mean  # the augmented pixel before normalisation
    inside = (pixel >= 0) & (pixel <= 255)
    if unpacked is None:
        unpacked = device_batch.normalize_image(
            mx.nd.array(packed_image[None], dtype='uint8'), MEAN, STD)[0].asnumpy()
    diff = np.abs(unpacked - dense_image) * std
    clipped = np.abs(packed_image - np.clip(pixel, 0, 255))[~inside]
    return diff[inside].max(initial=0), int((~inside).sum()), clipped.max(initial=0)


def test_packed_image_is_the_float_image_rounded(net, train_set):
    """Random augmentation decisions, mixup on: every pixel within 0.5 grey levels (plus
    float rounding) of the float32 pipeline's, or, outside [0, 255], clipped."""
    transform = YOLO3FastTrainTransform(96, 64, net, mixup=True)
    outside = 0
    for index in range(12):
        rng = sample_rng(4, 0, index)
        img, label = mixup_sample(train_set, index, rng, True)
        decisions = transform.draw(img.shape, label, rng)
        dense = transform.apply(img, label, decisions=decisions)
        image, rows, gt = transform.apply_packed(img, label, decisions=decisions)
        assert image.dtype == np.uint8 and image.shape == (3, 64, 96)
        np.testing.assert_array_equal(gt, dense[6])
        worst, count, clipped = _image_bound(dense[0], image)
        assert worst <= 0.5 + 1e-3, index
        assert clipped <= 0.5 + 1e-3, index
        outside += count
        expanded = expand_targets(mx.nd.array(rows[None]), transform.geometry.num_rows,
                                  transform.num_class)
        for got, expected in zip(expanded, dense[1:6]):
            assert got[0].asnumpy().tobytes() == expected.tobytes()
    assert outside > 0  # colour jitter did push pixels out of [0, 255]: clipping was tested


def test_packed_image_without_augmentation_is_exact(net, train_set):
    transform = YOLO3FastTrainTransform(96, 96, net, augment=False)
    img, label = train_set[0]
    dense = transform.apply(img, label, decisions=identity_decisions())
    image = transform.apply_packed(img, label, decisions=identity_decisions())[0]
    unpacked = device_batch.normalize_image(mx.nd.array(image[None], dtype='uint8'),
                                            MEAN, STD)[0].asnumpy()
    np.testing.assert_allclose(unpacked, dense[0], rtol=0, atol=2e-6)


def _dense_reference(loader, transform_of, epoch, seed, mixup):
    """Each batch as the dense float32 pipeline makes it, from the same per-sample draws."""
    batches = []
    for items, shape in zip(loader.plan.batches(epoch), loader.batch_shapes(epoch)):
        outs = []
        for index, sample_epoch in items:
            rng = sample_rng(seed, sample_epoch, index)
            outs.append(transform_of(shape).apply(*mixup_sample(loader.dataset, index, rng,
                                                                mixup), rng=rng))
        batches.append([np.stack([o[k] for o in outs]) for k in (0, 1, 2, 3, 4, 5)] +
                       [pad_stack([o[6] for o in outs])])
    return batches


@pytest.mark.parametrize('mixup', [True, False])
def test_loader_batches_unpack_to_the_dense_pipeline(net, train_set, mixup):
    """Random shapes, mixup on and off, one worker: the unpacked targets are the dense
    pipeline's to the bit, the image within the rounding bound."""
    kwargs = dict(random_shape=True, shape_interval=1, shapes=[64, 96], mixup=mixup, seed=9)
    loader = make_train_loader(train_set, net, 3, 64, num_workers=1, **kwargs)
    transforms = {s: YOLO3FastTrainTransform(s, s, net, mixup=True) for s in (64, 96)}
    try:
        loader.set_epoch(1)
        batches = list(loader)
    finally:
        loader.close()
    reference = _dense_reference(loader, transforms.get, 1, 9, mixup)
    assert {b[0].shape[-1] for b in batches} == {64, 96}
    for batch, expected in zip(batches, reference):
        assert device_batch.is_packed(batch) and batch[2].shape[1] == 1 + ASSIGNED_ROWS
        image, gt, *targets = unpack(batch)
        np.testing.assert_array_equal(gt.asnumpy(), expected[6])
        for got, want in zip(targets, expected[1:6]):
            assert got.asnumpy().tobytes() == want.tobytes()
        for packed, dense, unpacked in zip(batch[0].asnumpy(), expected[0], image.asnumpy()):
            worst, _, clipped = _image_bound(dense, packed, unpacked)
            assert worst <= 0.5 + 1e-3 and clipped <= 0.5 + 1e-3


@pytest.mark.parametrize('smooth', [False, True])
def test_losses_equal_with_dense_and_expanded_targets(net, train_set, smooth):
    """What the loss sees: the same losses, label smoothing on or off."""
    loader = make_train_loader(train_set, net, 2, 64, mixup=True, seed=2)
    batch = next(iter(loader))
    image, gt, *expanded = unpack(batch)
    transform = YOLO3FastTrainTransform(64, 64, net, mixup=True)
    dense = _dense_reference(loader, lambda s: transform, 0, 2, True)[0]
    model = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)
    model.initialize(mx.init.Xavier())
    model.set_label_smooth(smooth)
    with autograd.record():
        got = [l.asnumpy() for l in model(image, gt, *expanded)]
        want = [l.asnumpy() for l in model(image, gt, *[mx.nd.array(t) for t in dense[1:6]])]
    for g, w in zip(got, want):
        assert g.tobytes() == w.tobytes()


def test_to_devices_splits_then_unpacks_and_passes_dense_batches(net, train_set):
    loader = make_train_loader(train_set, net, 3, 64, seed=3)
    batch = next(iter(loader))
    contexts = [mx.cpu(0), mx.cpu(1)]
    parts = to_devices(batch, contexts)
    whole = unpack(batch)
    assert len(parts) == 7 and all(len(p) == 2 for p in parts)
    for arrays, full in zip(parts, whole):
        assert [a.context for a in arrays] == contexts
        np.testing.assert_array_equal(np.concatenate([a.asnumpy() for a in arrays]),
                                      full.asnumpy())
    # the cached graph's outputs are new arrays: an accumulation window holds two batches
    batches = iter(make_train_loader(train_set, net, 3, 64, seed=3))
    first, second = next(batches), next(batches)
    held = to_devices(first, contexts[:1])
    before = [arrays[0].asnumpy() for arrays in held]
    later = to_devices(second, contexts[:1])
    assert not np.array_equal(later[0][0].asnumpy(), before[0])
    for arrays, values in zip(held, before):
        np.testing.assert_array_equal(arrays[0].asnumpy(), values)
    # an accumulation window on a device that needs copies: every batch of the window is
    # copied before the first one's step runs, and each keeps its own values
    window = [to_devices(b, contexts[1:], expand=False) for b in (first, second)]
    for parts, batch in zip(window, (first, second)):
        for arrays, expected in zip(parts.expand(), unpack(batch)):
            np.testing.assert_array_equal(arrays[0].asnumpy(), expected.asnumpy())
    # once a batch's parts are gone, their device arrays take a later batch's copies;
    # what was computed from them before keeps its values
    held = window[0].expand()
    image, targets = window[0][0][0], window[0][2][0]  # same shapes in every batch
    del window[0]
    later = to_devices(second, contexts[1:], expand=False)
    assert later[0][0] is image and later[2][0] is targets
    del image, targets
    for arrays, expected in zip(held, unpack(first)):
        np.testing.assert_array_equal(arrays[0].asnumpy(), expected.asnumpy())
    for arrays, expected in zip(later.expand(), unpack(second)):
        np.testing.assert_array_equal(arrays[0].asnumpy(), expected.asnumpy())
    # gt_boxes reach the caller as they are: a later batch of the same shapes must not
    # write into the ones a caller holds
    shifted = device_batch.from_host([first[0].asnumpy(), first[1].asnumpy() + 1,
                                      first[2].asnumpy()])
    held = to_devices(first, contexts[1:])
    later = to_devices(shifted, contexts[1:])
    np.testing.assert_array_equal(held[1][0].asnumpy(), first[1].asnumpy())
    np.testing.assert_array_equal(later[1][0].asnumpy(), first[1].asnumpy() + 1)
    assert first.info == device_batch.batch_info(first[2].asnumpy())  # carried by the loader
    dense_parts = to_devices(whole, contexts)  # already dense: only split
    for arrays, full in zip(dense_parts, whole):
        np.testing.assert_array_equal(np.concatenate([a.asnumpy() for a in arrays]),
                                      full.asnumpy())


def test_batch_info_refuses_parts_of_different_batches(net):
    img, label = np.zeros((80, 90, 3), np.uint8), np.array([[5, 5, 40, 50, 1]], np.float32)
    targets = [pad_stack([YOLO3FastTrainTransform(s, s, net).apply_packed(img, label)[1]],
                         pad_val=0) for s in (64, 96)]
    with pytest.raises(ValueError, match='disagree'):
        device_batch.batch_info(np.concatenate(targets))
    with pytest.raises(ValueError, match='targets of a packed batch'):
        device_batch.batch_info(np.zeros((2, 5), np.float32))
    rows, classes, mean, std = device_batch.batch_info(targets[0])
    assert (rows, classes) == (3 * (2 * 2 + 4 * 4 + 8 * 8), 20)
    np.testing.assert_allclose(mean, MEAN, rtol=1e-6)


def _address(array):
    return array.__array_interface__['data'][0]


def test_ndarray_view_reads_numpy_memory_in_place_and_keeps_it_alive():
    owner = np.zeros(4096, np.uint8)
    released = []
    weakref.finalize(owner, released.append, True)
    for dtype in ('uint8', 'float32', 'float16', 'int32', 'int64', 'float64'):
        source = owner[64:64 + 12 * np.dtype(dtype).itemsize].view(dtype).reshape(3, 4)
        source.flags.writeable = True
        source[:] = np.arange(12).reshape(3, 4)
        view = device_batch.ndarray_view(source)
        assert view.dtype == np.dtype(dtype) and view.shape == (3, 4)
        assert view.context == mx.cpu(0)
        np.testing.assert_array_equal(view.asnumpy(), np.arange(12).reshape(3, 4))
        assert not source.flags.writeable  # as mx.nd.from_numpy(zero_copy=True) leaves it
        # zero-copy: the NDArray's data pointer is the source's, and a write to the
        # memory (through the still writable owner) is what the NDArray reads
        assert _address(device_batch.host_view(view)) == _address(source) == _address(owner) + 64
        owner[64:64 + np.dtype(dtype).itemsize] = 0
        assert view.asnumpy()[0, 0] == 0
        owner[64:64 + np.dtype(dtype).itemsize] = np.array([7], dtype).view(np.uint8)
        assert view.asnumpy()[0, 0] == 7
    del owner, source
    gc.collect()
    assert not released  # the last view's NDArray still holds the memory
    doubled = view * 2
    del view
    mx.nd.waitall()  # the product, then the engine's release of the view's memory
    for _ in range(100):  # the release may come from an engine thread a moment later
        if released:
            break
        gc.collect()
        time.sleep(0.02)
    assert released == [True]
    expected = 2 * np.arange(12).reshape(3, 4)
    expected[0, 0] = 14
    np.testing.assert_array_equal(doubled.asnumpy(), expected)
    assert device_batch.ndarray_view(np.zeros((0, 4), np.float32)).shape == (0, 4)
    with pytest.raises(ValueError, match='C-contiguous'):
        device_batch.ndarray_view(np.zeros((4, 4), np.float32).T)
    with pytest.raises(ValueError, match='int8'):
        device_batch.ndarray_view(np.zeros(4, np.int8))


def test_a_view_outlives_its_source_name_through_gc_and_other_allocations():
    """The NDArray alone keeps the buffer: after the last Python name of the source is
    gone and the collector ran, fresh allocations of the same size do not reuse it."""
    values = np.random.default_rng(3).random((64, 1024), dtype=np.float32)
    view = device_batch.ndarray_view(values.copy())
    gc.collect()
    others = [np.full((64, 1024), -1.0, np.float32) for _ in range(8)]
    np.testing.assert_array_equal(view.asnumpy(), values)
    assert float(mx.nd.sum(view).asscalar()) == pytest.approx(float(values.sum()), rel=1e-5)
    del others


@pytest.mark.parametrize('dtype', ['float32', 'float16'])
def test_packed_net_unpacks_in_the_step_graph_with_the_same_losses_and_gradients(
        train_set, dtype):
    """The training step's fused graph (unpacking + net, image cast inside) against the
    separate unpacking then the net, on two devices: the same losses and gradients."""
    contexts = [mx.cpu(0), mx.cpu(1)]
    model = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)
    model.initialize(mx.init.Xavier(), ctx=contexts)
    model.cast(dtype)
    model.hybridize()
    batch = next(iter(make_train_loader(train_set, model, 4, 64, mixup=True, seed=5)))
    parts = to_devices(batch, contexts, expand=False)
    assert isinstance(parts, device_batch.PackedParts) and parts[0][1].dtype == np.uint8
    params = [p for p in model.collect_params().values() if p.grad_req != 'null']

    def losses_and_grads(run):
        with autograd.record():
            losses = run()
            totals = [mx.nd.add_n(*device) for device in losses]
        autograd.backward(totals)
        return ([[l.asnumpy() for l in device] for device in losses],
                [p.grad(ctx).asnumpy() for p in params[:20] for ctx in contexts])

    want = losses_and_grads(lambda: [model(x.astype(dtype), gt, *targets)
                                     for x, gt, *targets in zip(*parts.expand())])
    nets = [device_batch.PackedNet(model, t.shape[0], t.shape[1] - 1, parts.info, dtype)
            for t in parts[2]]
    for net in nets:
        net.hybridize()
    got = losses_and_grads(lambda: [net(*part) for net, part in zip(nets, zip(*parts))])
    for g, w in zip(sum(got[0], []) + got[1], sum(want[0], []) + want[1]):
        assert g.dtype == w.dtype and g.tobytes() == w.tobytes()
