"""Start-up self-check: FP16/AMP agree with FP32 on one step, injected faults are caught,
the run decides stop/fallback, and a run with the check equals one without."""
import os
import random

import mxnet as mx
import numpy as np
import pytest

from gluoncv_fp16.cli import train as train_cli

from gluoncv_fp16.data.datasets import build_datasets
from gluoncv_fp16.model_zoo import get_model
from gluoncv_fp16.precision.policy import PrecisionPolicy
from gluoncv_fp16.train.checkpoint import read_checkpoint
from gluoncv_fp16.train.config import ConfigError
from gluoncv_fp16.train.precision_check import (GRADIENT_TOLERANCE, compare_step,
                                                loss_tolerance)
from gluoncv_fp16.train.self_check import (check_batch, check_images,
                                           self_check)

NAME = 'yolo3_mobilenet0.25_custom'


@pytest.fixture(scope='module')
def data(synthetic_root):
    """(train_set, classes, FP32 net for the transforms, one check batch at 64 px)."""
    train_set, _, classes = build_datasets('synthetic', root=synthetic_root)
    net = get_model(NAME, pretrained_base=False, classes=classes)
    net.initialize(mx.init.Zero())
    return train_set, classes, net, check_batch(train_set, net, 64, check_images(64), 0)


def compare(data, **kwargs):
    _, classes, _, batch = data
    return compare_step('fp16', NAME, {'classes': classes}, [mx.cpu()], batch, **kwargs)


def test_fp16_agrees_with_fp32_and_really_ran_in_fp16(data):
    result = compare(data)
    assert result.ok, result.figures()
    assert result.loss_tolerance == pytest.approx(loss_tolerance(48))  # mobilenet's L
    assert 0 < result.loss_error <= result.loss_tolerance
    assert result.min_cosine <= result.cosine < 1.0  # not identical: FP16 rounding happened
    assert abs(result.norm_ratio - 1) <= GRADIENT_TOLERANCE
    assert result.images == 16 and result.data_shape == 64


def test_a_broken_cast_is_caught(data, monkeypatch):
    """The batch image cast to FP16 through an integer type: a dtype bug that still runs."""
    original = PrecisionPolicy.cast_input

    def broken(self, array):
        return original(self, array.astype('int32')) if self.name == 'fp16' else array
    monkeypatch.setattr(PrecisionPolicy, 'cast_input', broken)
    result = compare(data)
    assert not result.ok, result.figures()
    assert 'gradients differ' in result.problem and result.cosine < 0.999, result.problem


def test_a_fixed_loss_scale_that_overflows_is_caught(data):
    result = compare(data, loss_scale=1e6)
    assert not result.ok and result.loss_scale == 1e6
    assert 'gradients are not finite at loss scale 1e+06' in result.problem
    assert 'try --loss-scale dynamic' in result.problem


def test_a_dynamic_scale_settles_below_overflow(data):
    result = compare(data, loss_scale='dynamic')
    assert result.ok and 2.0 ** -14 <= result.loss_scale < 1e6


def test_check_images_keeps_pixels_up_and_memory_down():
    assert [check_images(s) for s in (64, 128, 256, 416, 608)] == [16, 4, 2, 2, 2]
    assert [check_images(s, 2) for s in (64, 128, 416)] == [16, 4, 4]
    assert [check_images(s, 3) for s in (64, 416)] == [18, 6]


def cfg_for(root, out, *extra):
    argv = ['--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '2',
            '--dataset', 'synthetic', '--dataset-root', root, '-j', '0', '--gpus', '',
            '--save-prefix', str(out) + os.sep, '--no-random-shape', '--no-plots',
            '--log-interval', '1', *extra]
    return argv, train_cli.make_config(train_cli.parse_args(argv))


def test_the_check_leaves_global_random_state_alone(data, synthetic_root, tmp_path):
    train_set, classes, net, _ = data
    _, cfg = cfg_for(synthetic_root, tmp_path, '--fp16')
    from gluoncv_fp16.precision.policy import get_policy
    draws = []
    for run_check in (False, True):
        random.seed(5)
        np.random.seed(5)
        mx.random.seed(5)
        if run_check:
            out_cfg, policy = self_check(cfg, get_policy('fp16'), [mx.cpu()], train_set, net,
                                         {'classes': classes})
            assert policy.name == 'fp16' and out_cfg is cfg
        draws.append((random.random(), float(np.random.rand()),
                      float(mx.nd.random.uniform(shape=(1,)).asscalar())))
    assert draws[0] == draws[1]


def test_cli_flags_reach_the_config(synthetic_root, tmp_path):
    assert cfg_for(synthetic_root, tmp_path, '--fp16')[1].self_check == 'stop'
    assert cfg_for(synthetic_root, tmp_path, '--self-check', 'fallback')[1].self_check == \
        'fallback'
    assert cfg_for(synthetic_root, tmp_path, '--no-self-check')[1].self_check == 'off'
    with pytest.raises(ConfigError, match='cannot be used with several workers'):
        cfg_for(synthetic_root, tmp_path, '--self-check', 'fallback', '--kvstore', 'dist_sync')
    with pytest.raises(ConfigError, match="--self-check 'maybe'"):
        cfg_for(synthetic_root, tmp_path)[1].replace(self_check='maybe').validate()


def phases(out):
    import csv
    with open(os.path.join(str(out), 'yolo3_mobilenet0.25_synthetic_metrics.csv')) as f:
        return [row['phase'] for row in csv.DictReader(f)]


def test_overflowing_scale_stops_in_one_line_or_falls_back_to_fp32(synthetic_root, tmp_path,
                                                                     capsys):
    argv, _ = cfg_for(synthetic_root, tmp_path / 'stop', '--fp16', '--loss-scale', '1e6',
                      '--epochs', '1', '--max-iters', '1')
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err
    assert err.startswith('error: self-check fp16 vs fp32 on cpu(0)')
    assert 'not finite at loss scale 1e+06' in err and '--self-check fallback' in err
    argv, _ = cfg_for(synthetic_root, tmp_path / 'fallback', '--fp16', '--loss-scale', '1e6',
                      '--self-check', 'fallback', '--epochs', '1', '--max-iters', '1')
    assert train_cli.main(argv) == 0
    assert 'training in FP32 instead' in capsys.readouterr().out
    assert phases(tmp_path / 'fallback') == ['fp32']


def test_amp_broken_cast_stops_or_falls_back(synthetic_root, tmp_path, monkeypatch):
    """AMP's code path on CPU (as test_cli) with the loss's `sum` cast to float16 -- the
    class denominator overflows FP16. The AMP step runs in a child process; this process
    must never switch AMP on (it would stay on for the other tests): a guard fails if so."""
    from gluoncv_fp16.precision.policy import amp_active
    from gluoncv_fp16.train import build
    from gluoncv_fp16.train.self_check import SelfCheckFailed
    real_activate = build.activate_amp

    def guarded(policy, **kwargs):
        assert not policy.uses_amp, 'the training process would have switched AMP on'
        return real_activate(policy, **kwargs)
    monkeypatch.setattr(build, 'activate_amp', guarded)
    # The AMP child process (~10 s) runs once, for 'stop'; 'fallback' gets the same inputs,
    # so it is handed that real result and tested on what it does with it.
    from gluoncv_fp16.train import self_check as self_check_module
    real_check, results = self_check_module.check_agreement, []

    def check_once(*args, **kwargs):
        results.append(results[0] if results else real_check(*args, **kwargs))
        return results[-1]
    monkeypatch.setattr(self_check_module, 'check_agreement', check_once)
    for mode in ('stop', 'fallback'):
        _, cfg = cfg_for(synthetic_root, tmp_path / mode, '--amp', '--self-check', mode,
                         '--epochs', '1', '--max-iters', '1')
        cfg = cfg.replace(amp_fp16_ops=('sum',))
        if mode == 'stop':
            with pytest.raises(SelfCheckFailed, match='self-check amp vs fp32 on cpu.0. .16 '
                               'images at 64 px.: amp gradients are not finite'):
                build.build_training(cfg)
        else:
            loop, _ = build.build_training(cfg)
            assert loop.policy.name == 'fp32' and not amp_active()
    assert len(results) == 2 and results[0].mode == 'amp' and results[0].problem


def final_params(out):
    ckpt = read_checkpoint(os.path.join(str(out), 'yolo3_mobilenet0.25_synthetic_last.ckpt'))
    return ckpt.params, ckpt.meta['iteration']


def test_a_run_with_the_check_trains_and_resumes_bit_identically(synthetic_root, tmp_path,
                                                                 capsys):
    """Two iterations, then a resume for two more: with the check (twice) and without."""
    results = []
    for run, flags in (('checked', []), ('unchecked', ['--no-self-check'])):
        out = tmp_path / run
        for epochs, iters, resume in (('1', '2', []), ('2', '4', ['--resume', 'auto'])):
            argv, _ = cfg_for(synthetic_root, out, '--fp16', '--epochs', epochs,
                              '--max-iters', iters, *resume, *flags)
            assert train_cli.main(argv) == 0, capsys.readouterr().err[-2000:]
        log = capsys.readouterr().out
        assert (log.count('self-check fp16 vs fp32 on cpu(0) (16 images at 64 px): agrees')
                == (2 if run == 'checked' else 0)), log[-2000:]
        results.append(final_params(out))
    (checked, it_a), (unchecked, it_b) = results
    assert it_a == it_b == 4 and sorted(checked) == sorted(unchecked)
    different = [k for k in checked if not np.array_equal(checked[k], unchecked[k])]
    assert not different, different[:5]
