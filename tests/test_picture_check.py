"""deploy.picture_check: would each demo picture be right? Hand-built detections and truth
exercise every verdict (right, missed, extra, wrong class) and the threshold rule."""
import csv

import numpy as np
import pytest

from gluoncv_fp16.deploy.detection_record import DetectionRecord
from gluoncv_fp16.deploy.picture_check import (check_image, check_pictures, default_threshold,
                                               summarise, write_csv)
from gluoncv_fp16.deploy.predict import auto_threshold

CLASSES = ['circle', 'square', 'triangle']
A, B = [10, 10, 40, 40], [50, 50, 90, 80]   # two objects
NEAR_A = [12, 11, 41, 42]                   # IoU ~0.85 with A
OFF_A = [25, 25, 55, 55]                    # IoU ~0.14 with A: not a match
BACKGROUND = [0, 60, 20, 90]


def truth(*rows):
    return [(c, d, *box) for c, d, box in rows]


def drawn(*rows):
    return [(c, s, *box) for c, s, box in rows]


def test_every_object_found_once_with_its_class_is_right():
    gt = truth((0, False, A), (1, False, B))
    assert check_image(drawn((0, 0.9, NEAR_A), (1, 0.6, B)), gt) == (0, 0, 0)


@pytest.mark.parametrize('boxes, expected', [
    ([(0, 0.9, NEAR_A)], (1, 0, 0)),                           # B not drawn
    ([(0, 0.9, OFF_A), (1, 0.8, B)], (1, 1, 0)),               # A's box too far off
    ([(0, 0.9, A), (1, 0.8, B), (2, 0.7, BACKGROUND)], (0, 1, 0)),  # box on background
    ([(0, 0.9, A), (0, 0.8, NEAR_A), (1, 0.7, B)], (0, 1, 0)),  # two boxes, one object
    ([(2, 0.9, A), (1, 0.8, B)], (1, 0, 1)),                   # A drawn as a triangle
    ([(0, 0.9, A), (2, 0.5, NEAR_A), (1, 0.8, B)], (0, 0, 1)),  # A also labelled triangle
    ([], (2, 0, 0)),
])
def test_each_fault_is_counted(boxes, expected):
    gt = truth((0, False, A), (1, False, B))
    assert check_image(drawn(*boxes), gt) == expected


def test_difficult_objects_need_no_box_but_may_have_one():
    gt = truth((0, False, A), (1, True, B))
    assert check_image(drawn((0, 0.9, A)), gt) == (0, 0, 0)
    assert check_image(drawn((0, 0.9, A), (1, 0.8, B)), gt) == (0, 0, 0)


def test_the_best_box_takes_the_object_and_boxes_without_objects_are_extra():
    # Two circles overlapping A: the higher score (the poorer box) matches A first,
    # the better-placed one is the duplicate; an image without objects has only extras.
    gt = truth((0, False, A))
    assert check_image(drawn((0, 0.5, A), (0, 0.9, NEAR_A)), gt) == (0, 1, 0)
    assert check_image(drawn((1, 0.9, A)), []) == (0, 1, 0)
    assert check_image([], []) == (0, 0, 0)


def test_boxes_claim_objects_in_score_order_as_the_map_does():
    # Two circles side by side; the top-scoring box lies between them and takes the
    # nearer one (A), so the other box, on A only, is a duplicate and C is missed.
    # Claiming in the other order would pair them off: VOC's greedy rule, not the best pairing.
    gt = truth((0, False, A), (0, False, [20, 10, 50, 40]))
    between, on_a = [14, 10, 44, 40], [7, 10, 37, 40]
    assert check_image(drawn((0, 0.9, between), (0, 0.8, on_a)), gt) == (1, 1, 0)
    assert check_image(drawn((0, 0.8, between), (0, 0.9, on_a)), gt) == (0, 0, 0)


def _record():
    """Four images: right, missed (box below threshold), extra, wrong class."""
    record = DetectionRecord(CLASSES)
    label = np.array([A + [0, 0], B + [1, 0]], np.float32)
    pad = np.full(4, -1.0)
    cases = [([0, 1], [0.8, 0.7], [NEAR_A, B]),
             ([0, 1], [0.8, 0.3], [A, B]),             # B drawn only below 0.4
             ([0, 1, 2], [0.8, 0.7, 0.6], [A, B, BACKGROUND]),
             ([0, 2], [0.9, 0.7], [A, B])]
    for i, (ids, scores, boxes) in enumerate(cases):
        record.add(i, np.array(ids + [-1]), np.array(scores + [0.95]),
                   np.array(boxes + [pad]), label)  # the -1 row is NMS padding
    return record


def test_pictures_of_a_record_at_a_threshold():
    used, checks = check_pictures(_record(), 0.4)
    assert used == 0.4
    assert [(c.image_id, c.right, c.missed, c.extra, c.wrong_class) for c in checks] == [
        (0, True, 0, 0, 0), (1, False, 1, 0, 0), (2, False, 0, 1, 0), (3, False, 1, 0, 1)]
    assert summarise(checks) == {'images': 4, 'right': 1, 'missed': 2, 'extra': 1,
                                 'wrong_class': 1}
    _, low = check_pictures(_record(), 0.2)
    assert [c.right for c in low] == [True, True, False, False]


def test_default_threshold_is_demo_rule_on_the_record():
    record = _record()
    assert default_threshold(record) == auto_threshold([0.9]) == pytest.approx(0.45)
    used, checks = check_pictures(record)
    assert used == pytest.approx(0.45)
    assert summarise(checks)['right'] == 1


def test_csv_has_one_row_per_image(tmp_path):
    _, checks = check_pictures(_record(), 0.4)
    with open(write_csv(str(tmp_path / 'p.csv'), checks)) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['image_id', 'right', 'missed', 'extra', 'wrong_class']
    assert rows[1:] == [['0', '1', '0', '0', '0'], ['1', '0', '1', '0', '0'],
                        ['2', '0', '0', '1', '0'], ['3', '0', '1', '0', '1']]
