"""gluoncv_fp16.bench.grad_scale: FP16 gradient error against FP32 per loss scale."""
import os
import subprocess
import sys

import pytest

import numpy as np

from helpers import ROOT
from gluoncv_fp16.bench.grad_scale import (fp16_error_against_batch_noise,
                                           gradient_error_by_scale, noise_table,
                                           projection_on, relative_difference)


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory, synthetic_root):
    """An FP16 run of 2 steps at 64 px (training writes its run state)."""
    folder = tmp_path_factory.mktemp('gs')
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'train_yolo3.py'), '--fp16', '--gpus', '',
         '--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '2',
         '--dataset', 'synthetic', '--dataset-root', synthetic_root, '-j', '0',
         '--epochs', '1', '--max-iters', '2', '--no-self-check', '--no-plots',
         '--no-random-shape', '--save-prefix', str(folder) + os.sep],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return str(folder / 'yolo3_mobilenet0.25_synthetic_last.ckpt')


def test_power_of_two_scales_agree_until_fp16_overflows(tiny_checkpoint):
    """Scaling by a power of two moves only FP16 exponents: without underflow or overflow
    the FP16 gradient, unscaled, is the same at 2^-6 and 2^-5 but for the values that
    are subnormal at one scale and not the other (measured here: error against FP32
    1.6126 vs 1.6129); at 2^40 it overflows. (Near initialisation YOLOv3's summed loss overflows
    FP16 even at scale 1, and its error against FP32 is large: a fresh network amplifies
    rounding, docs/distributed.md.)"""
    rows = gradient_error_by_scale(tiny_checkpoint, images=2, exponents=(-6, -5, 40))
    assert [r['scale'] for r in rows] == [2.0 ** -6, 2.0 ** -5, 2.0 ** 40]
    low, high, huge = rows
    assert not low['overflow'] and not high['overflow'], rows
    assert 1e-3 > low['flushed'] >= high['flushed'], rows  # a lower scale flushes more
    assert abs(low['rel_l2'] - high['rel_l2']) <= 1e-2 * low['rel_l2'], rows
    assert huge['overflow'], 'FP16 (max 65504) cannot hold gradients scaled by 2^40'


def test_fp16_error_is_set_against_fp32_batch_to_batch_noise(tiny_checkpoint):
    """The FP16 error on batch A is gradient_error_by_scale's at scale 2^-6 (same batch,
    same computation); the same batch twice has no batch-to-batch change; the worst
    tensor's error is at least the error over all tensors (a weighted mean of them)."""
    found = fp16_error_against_batch_noise(tiny_checkpoint, images=2, seeds=(7, 8),
                                           scale=2.0 ** -6, worst=4)
    assert not found['overflow']
    by_scale = gradient_error_by_scale(tiny_checkpoint, images=2, exponents=(-6,))[0]
    assert found['fp16_error'] == pytest.approx(by_scale['rel_l2'], rel=1e-6)
    assert found['batch_noise'] > 0 and abs(found['bias']) < found['fp16_error']
    tensors = found['tensors']
    assert len(tensors) == 4 and tensors[0]['fp16_error'] >= found['fp16_error']
    assert [t['fp16_error'] for t in tensors] == sorted(
        (t['fp16_error'] for t in tensors), reverse=True)
    assert all(t['name'].endswith(('weight', 'bias', 'gamma', 'beta')) for t in tensors)
    assert len(noise_table(found)) == 3 + 4 and tensors[0]['name'] in noise_table(found)[3]
    same = fp16_error_against_batch_noise(tiny_checkpoint, images=2, seeds=(7, 7),
                                          scale=2.0 ** -6, worst=1)
    assert same['batch_noise'] < 1e-6
    assert noise_table(fp16_error_against_batch_noise(
        tiny_checkpoint, images=2, scale=2.0 ** 40)) == [
            'FP16 gradient not finite at loss scale 1.09951e+12']


def test_relative_difference_and_projection_on_crafted_gradients():
    """Projection: the part of the difference along the reference (-0.5: halved);
    an orthogonal error has none."""
    ref = [np.array([3.0, 0.0]), np.array([[0.0, 4.0]])]
    halved = [a / 2 for a in ref]
    assert relative_difference(ref, halved) == pytest.approx(0.5)
    assert projection_on(ref, halved) == pytest.approx(-0.5)
    turned = [np.array([3.0, 4.0]), np.array([[-3.0, 4.0]])]  # + (0, 4) and (-3, 0)
    assert projection_on(ref, turned) == pytest.approx(0.0)
    assert relative_difference(ref, turned) == pytest.approx(1.0)


def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, '-m', 'gluoncv_fp16.bench.grad_scale',
                           str(tmp_path / 'none.ckpt')], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 2 and 'Traceback' not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr



def test_the_checkpoints_dataset_is_rebuilt_with_every_recorded_flag(tmp_path):
    """A yolo run records --data and no folder: grad_scale reads that set, and says which
    file is gone once it moved."""
    from gluoncv_fp16.errors import ConfigError
    from helpers import write_yolo
    data = write_yolo(str(tmp_path / 'yolo'))
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'train_yolo3.py'), '--gpus', '',
         '--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '2',
         '--dataset', 'yolo', '--data', data, '-j', '0', '--epochs', '1', '--max-iters', '1',
         '--no-self-check', '--no-plots', '--no-random-shape', '--no-pretrained-base',
         '--save-prefix', str(tmp_path) + os.sep],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    ckpt = str(tmp_path / 'yolo3_mobilenet0.25_yolo_last.ckpt')
    rows = gradient_error_by_scale(ckpt, images=2, exponents=(0,))
    assert [r['scale'] for r in rows] == [1.0]
    os.rename(str(tmp_path / 'yolo'), str(tmp_path / 'moved'))
    with pytest.raises(ConfigError, match='data.yaml'):
        gradient_error_by_scale(ckpt, images=2, exponents=(0,))
