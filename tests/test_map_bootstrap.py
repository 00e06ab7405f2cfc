"""gluoncv_fp16.data.map_bootstrap: the VOC07 mAP's sampling error over images."""
import numpy as np
import pytest

from gluoncv_fp16.data.map_bootstrap import (ImageMatches, bootstrap_map, describe_samples,
                                              resample_counts)
from gluoncv_fp16.data.voc_map import VOC07MApMetric


def _random_set(rng, images, classes, with_difficult=True):
    """Random objects and detections near them (some off, some duplicates, tied scores)."""
    detections, truth = [], []
    for image in range(images):
        for _ in range(rng.integers(0, 4)):
            cid = int(rng.integers(classes))
            x0, y0 = rng.uniform(0, 60, 2)
            box = (x0, y0, x0 + rng.uniform(8, 30), y0 + rng.uniform(8, 30))
            hard = bool(with_difficult and rng.random() < 0.1)
            truth.append((image, cid, hard) + box)
            for _ in range(rng.integers(0, 3)):  # 0-2 detections of it, jittered
                jitter = rng.normal(0, 4, 4)
                label = cid if rng.random() < 0.85 else int(rng.integers(classes))
                score = round(float(rng.random()), 1)  # ties across images
                detections.append((image, label, score) + tuple(np.add(box, jitter)))
        for _ in range(rng.integers(0, 2)):  # background boxes
            x0, y0 = rng.uniform(0, 60, 2)
            detections.append((image, int(rng.integers(classes)), float(rng.random()),
                               x0, y0, x0 + 10, y0 + 10))
    return detections, truth


def _metric_map(detections, truth, classes):
    metric = VOC07MApMetric(class_names=['c{}'.format(c) for c in range(classes)])
    metric.detections, metric.truth = list(detections), list(truth)
    return metric.get()[1]


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_the_per_image_decomposition_gives_voc_maps_aps_exactly(seed):
    detections, truth = _random_set(np.random.default_rng(seed), 60, 4)
    expected = _metric_map(detections, truth, 4)
    matches = ImageMatches(detections, truth, 4, num_images=60)
    got = matches.class_aps() + [matches.map()]
    assert np.isnan(got).tolist() == np.isnan(expected).tolist()
    assert [g for g in got if g == g] == [e for e in expected if e == e]  # bit-equal
    assert bootstrap_map(detections, truth, 4, resamples=3, num_images=60)['map'] \
        == expected[-1]


def test_copies_of_one_image_have_no_sampling_error():
    one, truth = _random_set(np.random.default_rng(5), 1, 3, with_difficult=False)
    assert truth and one
    copies = 25
    detections = [(k,) + d[1:] for k in range(copies) for d in one]
    objects = [(k,) + t[1:] for k in range(copies) for t in truth]
    found = bootstrap_map(detections, objects, 3, resamples=50, seed=3)
    assert found['images'] == copies
    assert found['sd'] == 0.0, found
    assert found['ci95'] == [found['map'], found['map']]
    assert found['map'] == pytest.approx(_metric_map(one, truth, 3)[-1], abs=1e-12)


def test_two_images_by_hand():
    """One class, two images, one object each: image 0's detection (0.9) finds its
    object, image 1's (0.8) misses. Full set: recall 0.5 at precision 1, so 6 of the 11
    recall points score 1: AP 6/11. Image 0 twice: AP 1; image 1 twice: AP 0. The
    bootstrap draws those with probability 1/4, 1/2, 1/4: mean 1/4 + 3/11."""
    detections = [(0, 0, 0.9, 10, 10, 30, 30), (1, 0, 0.8, 50, 50, 60, 60)]
    truth = [(0, 0, False, 10, 10, 30, 30), (1, 0, False, 10, 10, 30, 30)]
    matches = ImageMatches(detections, truth, 1)
    assert matches.map() == pytest.approx(6 / 11)
    assert matches.map([2, 0]) == pytest.approx(1.0)
    assert matches.map([0, 2]) == 0.0
    assert matches.map([1, 1]) == matches.map()
    found = bootstrap_map(detections, truth, 1, resamples=4000, seed=1)
    samples = np.array(found['samples'])
    assert set(np.round(samples, 9)) == {0.0, round(6 / 11, 9), 1.0}
    assert np.mean(np.isclose(samples, 1.0)) == pytest.approx(0.25, abs=0.03)
    assert found['mean'] == pytest.approx(0.25 + 3 / 11, abs=0.02)
    assert found['ci95'] == pytest.approx([0.0, 1.0])


def test_the_bootstrap_mean_is_near_the_full_sets_map_and_the_sd_shrinks_with_images():
    rng = np.random.default_rng(11)
    small = _random_set(rng, 100, 3)
    large = _random_set(rng, 800, 3)
    found_small = bootstrap_map(*small, 3, resamples=200, num_images=100)
    found_large = bootstrap_map(*large, 3, resamples=200, num_images=800)
    for found in (found_small, found_large):
        assert abs(found['mean'] - found['map']) < 0.5 * found['sd'], found['map']
        lo, hi = found['ci95']
        assert lo < found['map'] < hi
    # the sd of a mean over n images falls like 1/sqrt(n): 8x the images, ~1/2.8 the sd
    assert 0.2 < found_large['sd'] / found_small['sd'] < 0.55


def test_resamples_are_seeded_and_draw_every_image_count_once():
    a, b = resample_counts(30, 5, seed=4), resample_counts(30, 5, seed=4)
    assert (a == b).all() and a.shape == (5, 30) and (a.sum(axis=1) == 30).all()
    assert not (a == resample_counts(30, 5, seed=5)).all()
    assert resample_counts(30, 0).shape == (0, 30)


def test_describe_samples_without_two_finite_values_gives_no_spread():
    assert describe_samples([0.5, float('nan')])['ci95'] is None
    assert np.isnan(describe_samples([])['sd'])
