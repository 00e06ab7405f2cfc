"""eval's confusion matrix and per-class scores (deploy/confusion.py) on detections and
ground truth crafted so that every cell is known by hand, and COCO's metrics from a
COCO-format ground-truth dict (deploy/evaluate.coco_metrics)."""
import csv

import numpy as np
import pytest

from gluoncv_fp16.deploy.confusion import (class_scores, confusion_matrix, image_confusion,
                                           write_confusion)
from gluoncv_fp16.deploy.detection_record import DetectionRecord
from gluoncv_fp16.deploy.evaluate import coco_metrics

CLASSES = ['cat', 'dog']
CAT, DOG, BACKGROUND = 0, 1, 2


def _record():
    """Image 0: a cat found (cat), a dog called cat, a dog box on empty ground, a cat box
    under the threshold. Image 1: a dog nobody found, a box on a difficult cat (ignored).
    Image 2: no objects, one cat box (background)."""
    record = DetectionRecord(CLASSES)
    label0 = np.array([[10, 10, 40, 40, CAT, 0], [60, 10, 90, 40, DOG, 0]], np.float32)
    record.add(0, ids=np.array([CAT, CAT, DOG, CAT]), scores=np.array([0.9, 0.8, 0.7, 0.1]),
               boxes=np.array([[11, 11, 40, 40], [60, 12, 90, 40], [10, 60, 40, 90],
                               [60, 60, 90, 90]], np.float32), label=label0)
    label1 = np.array([[10, 10, 40, 40, DOG, 0], [60, 60, 90, 90, CAT, 1]], np.float32)
    record.add(1, ids=np.array([CAT]), scores=np.array([0.95]),
               boxes=np.array([[60, 60, 90, 90]], np.float32), label=label1)
    record.add(2, ids=np.array([CAT]), scores=np.array([0.6]),
               boxes=np.array([[0, 0, 20, 20]], np.float32),
               label=np.full((1, 6), -1, np.float32))
    return record


EXPECTED = np.array([
    # predicted: cat dog background       true:
    [1, 0, 0],                          # cat: found once
    [1, 0, 1],                          # dog: once called cat, once missed
    [1, 1, 0],                          # background: a cat box and a dog box on nothing
])


def test_matrix_known_by_hand():
    matrix = confusion_matrix(_record(), thresh=0.5)
    np.testing.assert_array_equal(matrix, EXPECTED)


def test_threshold_moves_boxes_into_the_matrix():
    # at 0.05 the low-scoring cat box on empty ground (image 0) is drawn too
    expected = EXPECTED.copy()
    expected[BACKGROUND, CAT] += 1
    np.testing.assert_array_equal(confusion_matrix(_record(), thresh=0.05), expected)
    # at 1.0 nothing is drawn: every object is missed, no box is on background
    none = confusion_matrix(_record(), thresh=1.0)
    assert none[:, :BACKGROUND].sum() == 0
    np.testing.assert_array_equal(none[:BACKGROUND, BACKGROUND], [1, 2])


def test_precision_recall_f1_from_the_matrix():
    precision, recall, f1 = class_scores(EXPECTED)
    np.testing.assert_allclose(precision, [1 / 3, 0.0])   # cat: 1 of 3 cat boxes right
    np.testing.assert_allclose(recall, [1.0, 0.0])        # dog: 0 of 2 dogs found
    np.testing.assert_allclose(f1, [0.5, 0.0])
    # a class never drawn and never present has no scores at all
    precision, recall, f1 = class_scores(np.zeros((3, 3), int))
    assert np.isnan(precision).all() and np.isnan(recall).all() and np.isnan(f1).all()


def test_boxes_match_objects_by_iou_whatever_their_class():
    # two boxes on one dog: the one of highest IoU (a cat box) takes it, the other is a
    # box on background; a box below IoU 0.5 with the dog does not match it
    truth = [(DOG, False, 0, 0, 40, 40)]
    detections = [(DOG, 2, 2, 40, 40), (CAT, 0, 0, 40, 40), (DOG, 25, 25, 60, 60)]
    matrix = image_confusion(detections, truth, len(CLASSES))
    np.testing.assert_array_equal(matrix, [[0, 0, 0], [1, 0, 0], [0, 2, 0]])


def test_written_csv_png_and_summary(tmp_path):
    found = write_confusion(_record(), 0.5, str(tmp_path), 'float32')
    with open(found['csv']) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['true \\ predicted', 'cat', 'dog', 'background']
    assert [r[0] for r in rows[1:]] == ['cat', 'dog', 'background']
    np.testing.assert_array_equal([[int(v) for v in r[1:]] for r in rows[1:]], EXPECTED)
    with open(found['scores_csv']) as f:
        scores = list(csv.DictReader(f))
    assert scores[0] == {'class': 'cat', 'objects': '1', 'drawn': '3', 'correct': '1',
                         'precision': '0.3333', 'recall': '1.0000', 'f1': '0.5000'}
    assert scores[1]['objects'] == '2' and scores[1]['recall'] == '0.0000'
    assert (tmp_path / 'confusion_float32.png').stat().st_size > 1000
    assert found['matrix'] == EXPECTED.tolist() and found['threshold'] == 0.5


def _ground_truth():
    """A small and a large object on one image, categories numbered 3 and 7."""
    return {'images': [{'id': 5, 'width': 200, 'height': 200, 'file_name': 'a.jpg'},
                       {'id': 9, 'width': 200, 'height': 200, 'file_name': 'b.jpg'}],
            'annotations': [
                {'id': 1, 'image_id': 5, 'category_id': 3, 'bbox': [10, 10, 20, 20],
                 'area': 400, 'iscrowd': 0},
                {'id': 2, 'image_id': 5, 'category_id': 7, 'bbox': [50, 50, 120, 120],
                 'area': 14400, 'iscrowd': 0}],
            'categories': [{'id': 3, 'name': 'cat'}, {'id': 7, 'name': 'dog'}]}


def test_coco_metrics_of_a_ground_truth_dict():
    truth = _ground_truth()
    perfect = [{'image_id': a['image_id'], 'category_id': a['category_id'],
                'bbox': a['bbox'], 'score': 0.9} for a in truth['annotations']]
    stats = coco_metrics(truth, perfect)
    for name in ('AP', 'AP50', 'AP75', 'AP_small', 'AP_large'):
        assert stats[name] == pytest.approx(1.0), name
    assert stats['AP_medium'] == -1.0  # no medium object: pycocotools says -1
    # the large box found only roughly (IoU 0.64: counts at 0.5, not at 0.75); the small
    # one missed
    rough = [dict(perfect[1], bbox=[50, 50, 120, 120 * 0.64])]
    stats = coco_metrics(truth, rough)
    assert stats['AP50'] == pytest.approx(0.5) and stats['AP75'] == pytest.approx(0.0)
    assert stats['AP_small'] == pytest.approx(0.0)
    assert coco_metrics(truth, [])['AP'] == 0.0


def test_coco_metrics_of_a_record_against_its_own_ground_truth():
    """COCO's metrics for sets read from COCO-format files without pycocotools (coco-json):
    the record's ground truth as read, in original pixels; a difficult object is a crowd
    region, neither missed nor held against a box on it."""
    record = DetectionRecord(CLASSES)
    label = np.array([[10, 10, 40, 40, CAT, 0], [50, 50, 90, 90, DOG, 0],
                      [0, 50, 20, 90, DOG, 1]], np.float32)
    record.add(0, ids=np.array([CAT, DOG]), scores=np.array([0.9, 0.8]),
               boxes=label[:2, :4], label=label, scale=(2.0, 0.5))
    truth = record.coco_ground_truth()
    assert truth['annotations'][1]['bbox'] == [100.0, 25.0, 80.0, 20.0]  # original pixels
    assert [a['iscrowd'] for a in truth['annotations']] == [0, 0, 1]
    stats = coco_metrics(truth, record.coco_json())
    assert stats['AP'] == pytest.approx(1.0) and stats['AP75'] == pytest.approx(1.0)
    # the dog missed: dog AP 0, cat AP 1
    missed = DetectionRecord(CLASSES)
    missed.add(0, ids=np.array([CAT]), scores=np.array([0.9]), boxes=label[:1, :4],
               label=label, scale=(2.0, 0.5))
    assert coco_metrics(missed.coco_ground_truth(), missed.coco_json())['AP50'] == \
        pytest.approx(0.5)
