"""Shared fixtures: small synthetic data and tiny YOLOv3 inputs, all on CPU."""
import random

import mxnet as mx
import numpy as np
import pytest


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """A small synthetic VOC-layout dataset, generated once per test session."""
    from gluoncv_fp16.data import generate
    root = str(tmp_path_factory.mktemp('data') / 'VOCshapes')
    return generate(root, num_train=24, num_val=8, width=128, height=128, seed=3)


def yolo_training_batch(net, size=64, batch=2, seed=0):
    """(image, gt_boxes, five target arrays) for `net`, built by GluonCV's own transform."""
    from gluoncv.data.batchify import Pad, Stack, Tuple
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    rng = np.random.RandomState(seed)
    transform = YOLO3DefaultTrainTransform(size, size, net)
    samples = []
    for _ in range(batch):
        img = mx.nd.array(rng.randint(0, 255, size=(size + 20, size + 10, 3)), dtype='uint8')
        label = np.array([[4, 6, 40, 50, 0], [30, 20, size, size + 10, 1]], dtype='float32')
        samples.append(transform(img, label))
    batchify = Tuple(*([Stack() for _ in range(6)] + [Pad(axis=0, pad_val=-1)]))
    # batchify returns cpu_shared arrays; a hybridized net on cpu(0) refuses them.
    image, obj, centers, scales, weights, clas, gt = [
        a.as_in_context(mx.cpu()) for a in batchify(samples)]
    return image, gt, (obj, centers, scales, weights, clas)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)  # GluonCV's transforms draw from Python's `random`
    mx.random.seed(0)
    np.random.seed(0)
