"""Datasets: layouts, bad-sample repair/skip/strict, COCO metric use, RecordIO."""
import os
import shutil
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluoncv_fp16.data import SHAPE_CLASSES
from gluoncv_fp16.data.datasets import build_datasets
from gluoncv_fp16.data.imageio import BadSampleError
from helpers import write_coco, write_rec_dataset


def test_custom_folder_reads_sorted_classes_and_voc_labels(synthetic_root):
    train, val, classes = build_datasets('custom', root=synthetic_root)
    assert classes == sorted(SHAPE_CLASSES) and len(train) == 24 and len(val) == 8
    img, label = train[0]
    assert img.dtype == np.uint8 and img.shape == (128, 128, 3)
    assert label.dtype == np.float32 and label.shape[1] == 6  # + difficult, as GluonCV
    assert (label[:, :4] >= 0).all() and (label[:, 2:4] <= 128).all()
    assert train.bad_sample_count == 0


def test_synthetic_is_generated_once_into_root(tmp_path):
    root = str(tmp_path / 'synth')
    train, _, classes = build_datasets('synthetic', root=root)
    split = os.path.join(root, 'ImageSets', 'Main', 'train.txt')
    assert classes == list(SHAPE_CLASSES)
    assert 0 < len(train) == len(Path(split).read_text().split())
    stamp = os.path.getmtime(split)
    build_datasets('synthetic', root=root)
    assert os.path.getmtime(split) == stamp


@pytest.fixture
def broken_root(synthetic_root, tmp_path):
    """A copy of the synthetic folder with one of each kind of bad sample."""
    root = str(tmp_path / 'broken')
    shutil.copytree(synthetic_root, root)
    ids = Path(root, 'ImageSets', 'Main', 'train.txt').read_text().split()

    def path(i, sub, ext):
        return os.path.join(root, sub, ids[i] + ext)
    data = Path(path(0, 'JPEGImages', '.jpg')).read_bytes()
    Path(path(0, 'JPEGImages', '.jpg')).write_bytes(data[:len(data) // 2])   # truncated
    Path(path(1, 'JPEGImages', '.jpg')).write_bytes(b'not an image at all')  # unreadable
    Path(path(2, 'Annotations', '.xml')).write_text('<annotation><object>')  # malformed
    gray = cv2.imread(path(3, 'JPEGImages', '.jpg'), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(path(3, 'JPEGImages', '.jpg'), gray)                         # grayscale
    os.remove(path(4, 'JPEGImages', '.jpg'))
    rgba = cv2.cvtColor(cv2.imread(path(5, 'JPEGImages', '.jpg')), cv2.COLOR_BGR2BGRA)
    cv2.imwrite(path(4, 'JPEGImages', '.png'), rgba)                         # RGBA png
    xml = Path(path(6, 'Annotations', '.xml')).read_text()
    Path(path(6, 'Annotations', '.xml')).write_text(
        xml.replace('<name>', '<name>unicorn', 1))                           # unknown
    xml = Path(path(8, 'Annotations', '.xml')).read_text()
    Path(path(8, 'Annotations', '.xml')).write_text(
        xml.replace('<xmax>', '<xmax>9', 1))                                 # outside
    xml = Path(path(7, 'Annotations', '.xml')).read_text()
    start = xml.index('<xmin>') + len('<xmin>')
    end = xml.index('</xmin>')
    xmax = xml[xml.index('<xmax>') + 6:xml.index('</xmax>')]
    Path(path(7, 'Annotations', '.xml')).write_text(xml[:start] + xmax + xml[end:])  # zero
    return root, ids


def test_bad_samples_are_repaired_or_skipped_and_counted(broken_root):
    root, ids = broken_root
    train, _, _ = build_datasets('custom', root=root, classes=SHAPE_CLASSES)
    counts = train.bad_samples.counts()
    # the malformed XML, and images left without any valid box, are skipped up front
    assert len(train) == 24 - 1 - counts.get('no valid boxes', 0)
    for i in range(len(train)):  # a whole epoch, no crash
        img, label = train[i]
        assert img.shape[2] == 3 and img.dtype == np.uint8 and len(label) > 0
        assert (label[:, 2] > label[:, 0]).all() and (label[:, 2] <= img.shape[1]).all()
    counts = train.bad_samples.counts()
    for reason in ['truncated image', 'unreadable image', 'malformed XML',
                   'box clipped to image', 'unknown class dropped', 'zero-area box dropped']:
        assert counts.get(reason) == 1, (reason, counts)
    assert train.bad_samples.conversions() == {'grayscale converted': 1,
                                               'alpha channel dropped': 1}
    assert 'truncated image' in train.bad_samples.summary()
    assert train[0][0].shape == train[1][0].shape  # a skipped image is replaced


def test_strict_fails_on_first_bad_sample_naming_the_file(broken_root):
    root, ids = broken_root
    with pytest.raises(BadSampleError, match=ids[2] + '.xml'):
        build_datasets('custom', root=root, classes=SHAPE_CLASSES, strict=True)


def test_missing_folder_and_split_give_one_line_errors(tmp_path, synthetic_root):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / 'nope')):
        build_datasets('custom', root=str(tmp_path / 'nope'))
    with pytest.raises(FileNotFoundError, match='ImageSets.Main.holdout.txt'):
        build_datasets('custom', root=synthetic_root, splits=('train', 'holdout'))
    with pytest.raises(FileNotFoundError, match='VOC2007'):
        build_datasets('voc', root=str(tmp_path))
    with pytest.raises(ValueError, match='unknown dataset'):
        build_datasets('imagenet')


def test_coco_labels_and_gluoncv_metric(tmp_path):
    from gluoncv.utils.metrics.coco_detection import COCODetectionMetric
    root = str(tmp_path / 'coco')
    rs = np.random.RandomState(0)
    images = [rs.randint(0, 255, (60, 80, 3)).astype(np.uint8) for _ in range(3)]
    boxes = [[(10, 5, 30, 20, 3)], [(0, 0, 70, 10, 7)], []]
    write_coco(root, 'val2017', images, boxes)
    boxes[1].append((5, 5, 0, 4, 3))  # zero-area, in the training split only
    boxes[1].append((30, 5, -10, 4, 3))  # xmin > xmax, as COCO writes it
    write_coco(root, 'train2017', images, boxes)
    train, val, classes = build_datasets('coco', root=root)
    assert classes == ['cat', 'dog'] and len(train) == 3 and len(val) == 3
    assert train.background_count() == 1 and len(train[2][1]) == 0  # trained on
    np.testing.assert_allclose(train[0][1], [[10, 5, 39, 24, 0]])
    assert train[1][1][0, 2] == 69 and train.bad_samples.counts() == {
        'zero-area box dropped': 1, 'box with negative width dropped': 1}
    metric = COCODetectionMetric(val, str(tmp_path / 'eval'), use_time=False)
    for i in range(len(val)):
        gt = val[i][1]
        metric.update(mx.nd.array(gt[None, :, :4]), mx.nd.array(gt[None, :, 4:5]),
                      mx.nd.ones((1, len(gt), 1)))
    names, values = metric.get()
    assert float(values[names.index('~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~\n')]) > 90


def test_recordio_matches_gluoncv_reader(tmp_path):
    from gluoncv.data import RecordFileDetection
    root = write_rec_dataset(str(tmp_path / 'rec'), 4, lambda k: [[k % 2, 0.1, 0.2, 0.6, 0.9],
                                                                  [1, 0.5, 0.5, 0.9, 0.7]])
    with pytest.raises(ValueError, match='classes.txt'):
        build_datasets('rec', root=root)
    train, val, classes = build_datasets('rec', root=root, classes=['a', 'b'])
    reference = RecordFileDetection(os.path.join(root, 'train.rec'))
    for i in range(len(train)):
        img, label = train[i]
        ref_img, ref_label = reference[i]
        np.testing.assert_array_equal(img, ref_img.asnumpy())
        np.testing.assert_allclose(label, ref_label, rtol=1e-6)
    assert len(val) == 4 and classes == ['a', 'b']
