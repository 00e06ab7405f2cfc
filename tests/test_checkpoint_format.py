"""The checkpoint format: no pickle anywhere, damaged files refused in one line, old files
converted only on an explicit opt-in."""
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from gluoncv_fp16.train.checkpoint import (CheckpointError, load_run_state, read_checkpoint,
                                           save_run_state)
from gluoncv_fp16.train.legacy import convert_v1_checkpoint
from helpers import MODEL, ROOT, ListLoader, make_batches, make_loop



@pytest.fixture(scope='module')
def trained_fp16(tmp_path_factory):
    loop = make_loop(ListLoader(make_batches(count=2, seed=20)), 'fp16')
    loop.train(0, 1)
    return loop


class Evil:
    """A pickle payload that creates `marker` when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch {}'.format(self.marker),))


def write_v1(path, loop, trainer_states, meta_extra=None):
    """A checkpoint as gluoncv_fp16 0.1 wrote it: FP16-rounded weights + pickled trainer."""
    tmp = str(path) + '.params'
    mx.nd.save(tmp, {n: p.data().astype('float32')
                     for n, p in loop.net._collect_params_with_prefix().items()})
    meta = {'format_version': 1, 'epoch': loop.epoch, 'iteration': loop.iteration,
            'phase': loop.phase, 'scaler': loop.scaler.state_dict(),
            'guard': loop.guard.state_dict(), 'hooks': {}, 'model': MODEL, 'config': {}}
    meta.update(meta_extra or {})
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('state.json', json.dumps(meta))
        zf.write(tmp, 'params.params')
        zf.writestr('trainer.states', trainer_states)
    os.remove(tmp)
    return str(path)


def test_round_trip_keeps_every_array_and_number(trained_fp16, tmp_path):
    state = trained_fp16.capture()
    path = save_run_state(str(tmp_path / 'a.ckpt'), state, {'model': MODEL})
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ['params.params', 'state.json', 'state.params']
        assert b'\x80' not in zf.read('state.json')  # plain JSON, no pickle opcodes
    back = load_run_state(path)
    assert set(back.weights) == set(state.weights)
    for name, value in state.weights.items():
        assert np.array_equal(back.weights[name].asnumpy(), value.asnumpy()), name
    assert set(back.arrays()) == set(state.arrays()) and state.arrays()
    for name, value in state.arrays().items():
        assert np.array_equal(back.arrays()[name].asnumpy(), value.asnumpy()), name
    assert back.meta['optimizer'] == state.meta['optimizer']
    assert back.meta['scaler'] == state.meta['scaler'] and back.meta['phase'] == 'fp16'
    # the weights member holds the FP32 masters, readable as a plain parameter file
    assert all(v.dtype == np.float32 for v in read_checkpoint(path).params.values())


def test_malicious_pickled_checkpoint_runs_nothing(trained_fp16, tmp_path):
    marker = tmp_path / 'pwned'
    evil = write_v1(tmp_path / 'evil_last.ckpt', trained_fp16, pickle.dumps(Evil(marker)))
    with pytest.raises(CheckpointError, match='pickle, which is never loaded'):
        load_run_state(evil)
    with pytest.raises(CheckpointError, match='pickle'):
        read_checkpoint(evil)
    argv = [sys.executable, os.path.join(ROOT, 'train_yolo3.py'), '--network', 'mobilenet0.25',
            '--dataset', 'synthetic', '--gpus', '', '--data-shape', '64', '--batch-size', '2',
            '-j', '0', '--save-prefix', str(tmp_path) + os.sep, '--resume', evil,
            '--no-pretrained-base', '--epochs', '1', '--max-iters', '1']
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 2 and 'Traceback' not in out.stderr, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1 and '--trust-pickle' in out.stderr
    for script in ('diff_params.py', 'export.py', 'demo.py'):
        args = {'diff_params.py': [evil, evil], 'export.py': [evil, '--out',
                                                               str(tmp_path / 'x')],
                'demo.py': ['--params', evil, str(tmp_path / 'none.jpg')]}[script]
        done = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', script), *args],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 2 and 'Traceback' not in done.stderr, (script, done.stderr)
    assert not marker.exists(), 'unpickling the checkpoint ran code'


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'extra_member', 'bad_json'])
def test_damaged_checkpoints_are_one_clear_error(trained_fp16, tmp_path, damage):
    path = save_run_state(str(tmp_path / 'a.ckpt'), trained_fp16.capture(), {'model': MODEL})
    data = Path(path).read_bytes()
    if damage == 'truncated':
        Path(path).write_bytes(data[:len(data) // 2])
    elif damage == 'garbage':
        Path(path).write_bytes(b'not a checkpoint at all' * 100)
    elif damage == 'extra_member':
        with zipfile.ZipFile(path, 'a') as zf:
            zf.writestr('payload.bin', b'\x80\x04')
    else:
        with zipfile.ZipFile(path) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        members['state.json'] = b'{"epoch": '
        with zipfile.ZipFile(path, 'w') as zf:
            for name, value in members.items():
                zf.writestr(name, value)
    with pytest.raises(CheckpointError) as err:
        load_run_state(path)
    message = str(err.value)
    assert '\n' not in message and "'{}'".format(path) in message
    assert any(w in message for w in ('damaged', 'not a gluoncv_fp16 checkpoint')), message


def test_unknown_phase_or_version_is_refused_not_guessed(trained_fp16, tmp_path):
    from gluoncv_fp16.train.resume import resume_from
    state = trained_fp16.capture()
    for change, match in (({'phase': 'bf16'}, "phase 'bf16'"),
                          ({'state_version': 99}, 'version 99')):
        state.meta = dict(state.meta, **change)
        path = save_run_state(str(tmp_path / 'x.ckpt'), state, {'model': MODEL})
        with pytest.raises(CheckpointError, match=match):
            resume_from(make_loop(ListLoader([])), path, MODEL)
        state = trained_fp16.capture()


def test_old_format_converts_only_with_trust_and_keeps_masters_and_momentum(trained_fp16,
                                                                           tmp_path):
    loop = trained_fp16
    v1 = write_v1(tmp_path / 'old.ckpt', loop, _save_states_bytes(loop.trainer, tmp_path))
    with pytest.raises(CheckpointError, match='--trust-pickle'):
        convert_v1_checkpoint(v1, str(tmp_path / 'new.ckpt'))
    new = convert_v1_checkpoint(v1, str(tmp_path / 'new.ckpt'), trust_pickle=True)
    converted, live = load_run_state(new), loop.capture()
    for name, value in live.weights.items():   # masters, not the FP16 rounding
        assert np.array_equal(converted.weights[name].asnumpy(), value.asnumpy()), name
    assert set(converted.optimizer.arrays) == set(live.optimizer.arrays)
    for name, value in live.optimizer.arrays.items():
        assert np.array_equal(converted.optimizer.arrays[name].asnumpy(), value.asnumpy())
    assert converted.optimizer.counters['num_update'] == live.optimizer.counters['num_update']
    script = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts',
                                                          'convert_checkpoint.py'),
                             v1, str(tmp_path / 'n2.ckpt')], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert script.returncode == 2 and '--trust-pickle' in script.stderr


def _save_states_bytes(trainer, tmp_path):
    path = str(tmp_path / 'trainer.states')
    trainer.save_states(path)  # gluoncv_fp16 0.1's writer: MXNet's own pickle
    with open(path, 'rb') as f:
        return f.read()


def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    from gluoncv_fp16.train.checkpoint import atomic_write, remove_stale_temp_files
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / '.tmp-{}-abc.ckpt'.format(dead)
    live = tmp_path / '.tmp-{}-def.ckpt'.format(os.getpid())
    stale.write_bytes(b'x' * 10)
    live.write_bytes(b'y')
    assert remove_stale_temp_files(str(tmp_path)) == [str(stale)]
    assert live.exists() and not stale.exists()
    with pytest.raises(RuntimeError), atomic_write(str(tmp_path / 'w.params')) as f:
        f.write(b'partial')
        raise RuntimeError('killed mid-write')
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]
