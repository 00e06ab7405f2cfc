"""The fast transform's random augmentation has GluonCV's statistics.

GluonCV's own functions (random colour distort, expand, constrained crop, flip) are
sampled many times and compared with the decisions drawn from a per-sample
``np.random.Generator``; two-sample Kolmogorov-Smirnov tests on fixed seeds, so the
test is deterministic.
"""
import random

import mxnet as mx
import numpy as np
import pytest
from scipy import stats
from gluoncv.data.transforms import image as gimage
from gluoncv.data.transforms.experimental.bbox import random_crop_with_constraints
from gluoncv.data.transforms.experimental.image import random_color_distort

from gluoncv_fp16.data.augment import GeneratorSource, draw_crop, draw_decisions
from gluoncv_fp16.data.color import draw_color_jitter

DRAWS = 1500
BOXES = np.array([[10, 20, 60, 70, 0], [70, 5, 150, 110, 1], [100, 80, 110, 95, 2]],
                 dtype=np.float32)


def assert_same_distribution(ours, theirs, name):
    result = stats.ks_2samp(np.asarray(ours, float), np.asarray(theirs, float))
    assert result.pvalue > 1e-3, '{}: KS statistic {:.3f}, p={:.2g}'.format(
        name, result.statistic, result.pvalue)


def assert_same_rate(ours, theirs, name):
    table = [[sum(ours), len(ours) - sum(ours)], [sum(theirs), len(theirs) - sum(theirs)]]
    assert stats.chi2_contingency(table)[1] > 1e-3, (name, np.mean(ours), np.mean(theirs))


@pytest.fixture
def seeded():
    np.random.seed(123)
    random.seed(123)


def crop_features(crop, width, height):
    left, top, w, h = crop
    return w * h / float(width * height), w / float(h), (left + w / 2.0) / width


def test_crop_sizes_match(seeded):
    width, height = 160, 120
    rng = GeneratorSource(np.random.default_rng(7))
    draws = 400  # GluonCV's crop costs ~15 ms a draw
    theirs = [crop_features(random_crop_with_constraints(BOXES, (width, height))[1],
                            width, height) for _ in range(draws)]
    ours = [crop_features(draw_crop(rng, BOXES, width, height)[0], width, height)
            for _ in range(3 * draws)]
    for i, name in enumerate(['area fraction', 'aspect', 'centre x']):
        assert_same_distribution([o[i] for o in ours], [t[i] for t in theirs], name)
    assert_same_rate([o[0] == 1.0 for o in ours], [t[0] == 1.0 for t in theirs], 'no crop')


def test_expand_and_flip_match(seeded):
    img = mx.nd.zeros((30, 40, 3))
    ours = [draw_decisions(GeneratorSource(np.random.default_rng([3, i])), 40, 30,
                           BOXES[:, :4] / 4) for i in range(DRAWS)]
    theirs = [gimage.random_expand(img, fill=0)[1] for _ in range(DRAWS // 2)]
    expanded = [d.expand for d in ours if d.expand is not None]
    # GluonCV expands when np.random.uniform(0, 1) > 0.5
    assert_same_rate([d.expand is not None for d in ours],
                     list(np.random.uniform(size=DRAWS) > 0.5), 'expand rate')
    assert_same_distribution([e[2] / 40.0 for e in expanded], [t[2] / 40.0 for t in theirs],
                             'expand ratio')
    assert_same_distribution([e[0] / max(e[2] - 40, 1) for e in expanded],
                             [t[0] / max(t[2] - 40, 1) for t in theirs], 'expand offset')
    flips = [gimage.random_flip(img[:1, :1], px=0.5)[1][0] for _ in range(DRAWS)]
    assert_same_rate([d.flip for d in ours], flips, 'flip rate')
    assert_same_distribution([d.interp for d in ours], np.random.randint(0, 5, DRAWS), 'interp')


def test_max_expand_is_gluoncvs_max_ratio_and_1_keeps_the_canvas(seeded):
    img = mx.nd.zeros((30, 40, 3))

    def draws(max_expand):
        return [draw_decisions(GeneratorSource(np.random.default_rng([3, i])), 40, 30,
                               BOXES[:, :4] / 4, max_expand=max_expand) for i in range(DRAWS)]
    expanded = [d.expand for d in draws(2.0) if d.expand is not None]
    theirs = [gimage.random_expand(img, max_ratio=2, fill=0)[1] for _ in range(DRAWS // 2)]
    assert max(e[2] for e in expanded) <= 80 and max(e[2] for e in expanded) > 70
    assert_same_distribution([e[2] / 40.0 for e in expanded], [t[2] / 40.0 for t in theirs],
                             'expand ratio at max 2')
    kept = draws(1.0)
    assert all(d.expand is None or d.expand == (0, 0, 40, 30) for d in kept)
    assert sum(d.expand is not None for d in kept) > DRAWS // 3  # drawn, at ratio 1


def test_colour_jitter_matches(seeded):
    pixel = np.array([[[200.0, 90.0, 30.0]]], np.float32)
    theirs = np.array([random_color_distort(mx.nd.array(pixel)).asnumpy().ravel()
                       for _ in range(DRAWS)])
    rng = GeneratorSource(np.random.default_rng(11))
    ours = np.array([draw_color_jitter(rng).apply(pixel).ravel() for _ in range(DRAWS)])
    for c, name in enumerate('RGB'):
        assert_same_distribution(ours[:, c], theirs[:, c], 'colour ' + name)
    unchanged = np.all(np.abs(ours - pixel.ravel()) < 1e-3, axis=1)
    assert 0.02 < unchanged.mean() < 0.12  # all four distortions off: 1/16 of the time
