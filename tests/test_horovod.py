"""Horovod for real: 2 workers started by horovodrun (Gloo, loopback, CPU).

- 2 workers x batch 2 equal one process on cpu:0,cpu:1 x batch 4 whose context k is fed
  worker k's shard (as tests/test_dist_training.py does for dist_sync), over 2 epochs, in
  FP32 and in FP16 -- which also shows that each worker reads its own shard of every epoch
  and that gradients are averaged over the global batch;
- only rank 0 validates, logs to the main log and writes files; the batch arithmetic is
  logged;
- an FP16 run preempted mid-epoch (SIGTERM to ``scripts/launch.py``) ends like a
  preempted dist_sync job -- exit 143, the launcher's one line, each worker's "stopped by
  SIGTERM" line, no traceback -- and resumed with ``--resume auto`` ends where the
  uninterrupted reference does;
- the NaN-guard vote, the loss-scale skip, collective give-up, a killed worker, and a
  stop signal that reaches one worker directly or the launcher as Ctrl-C
  (tests/horovod_worker.py).

The jobs need Horovod built with MXNet (``bash scripts/install_horovod.sh``); without it
they are skipped with that reason, or fail when GLUONCV_FP16_REQUIRE_HOROVOD=1 (set by
.ci/run). The refusals at the end need no Horovod and always run. Every job has a
timeout, and a job that outlives it is killed with its whole process group.
"""
import csv
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from gluoncv_fp16.cli import train as train_cli

from gluoncv_fp16.distributed.horovod_launch import find_horovodrun
from gluoncv_fp16.distributed.launcher import LaunchError, _descendants, _kill_all
from gluoncv_fp16.distributed.workers import WorkerSetup, horovod_device
from gluoncv_fp16.train.build import build_training
from gluoncv_fp16.train.config import ConfigError
from gluoncv_fp16.train.checkpoint import (load_run_state, read_params,
                                           structural_params)
from gluoncv_fp16.utils.param_diff import compare_params
from helpers import ROOT, child_env, train_on_two_contexts


def _horovod_missing():
    try:
        import horovod.mxnet  # noqa: F401
        find_horovodrun()
    except (ImportError, LaunchError) as err:
        return 'Horovod with MXNet is not installed (bash scripts/install_horovod.sh): {}'.format(
            str(err).splitlines()[0])
    return None


HOROVOD_MISSING = _horovod_missing()
# .ci/run sets it: there, a test that cannot run is a failed build, not a skip
REQUIRE_HOROVOD = os.environ.get('GLUONCV_FP16_REQUIRE_HOROVOD', '') not in ('', '0')


def needs_horovod(test):
    """A test that needs Horovod: skipped with the reason when it is missing, failed
    instead under GLUONCV_FP16_REQUIRE_HOROVOD=1."""
    @functools.wraps(test)
    def run_or_skip(*args, **kwargs):
        if HOROVOD_MISSING is not None and REQUIRE_HOROVOD:
            pytest.fail('GLUONCV_FP16_REQUIRE_HOROVOD is set but ' + HOROVOD_MISSING)
        if HOROVOD_MISSING is not None:
            pytest.skip(HOROVOD_MISSING)
        return test(*args, **kwargs)
    return run_or_skip

JOB_TIMEOUT = 240  # s; a job takes 15-30 s on 2 busy cores
STEPS_PER_EPOCH = 6  # 24 images / (2 workers x batch 2)
RUN = 'yolo3_mobilenet0.25_synthetic'
# As in tests/test_dist_training.py: both sides add the same two gradients (one rounding
# in FP32, or in FP16 for the FP16 runs, whatever the order) and scale by the same
# power-of-two normaliser, so the runs can agree to the bit. The tolerance allows for
# oneDNN kernels whose reduction order depends on the process's thread count (~100 FP32
# ulps). A real bug (a gradient not averaged, a worker reading the other's shard, a lost
# step on resume) moves weights by > 1e-3.
TOL = 1e-5


def cli_args(data_root, out, *extra):
    return ['--network', 'mobilenet0.25', '--data-shape', '64', '--dataset', 'synthetic',
            '--dataset-root', data_root, '-j', '0', '--save-prefix', str(out) + os.sep,
            '--no-random-shape', '--no-plots', '--epochs', '2', '--seed', '11',
            '--lr', '0.01', '--log-interval', '1', *extra]


def worker_args(data_root, out, *extra):
    return cli_args(data_root, out, '--horovod', '--gpus', '', '--batch-size', '2', *extra)


def run_job(argv, timeout=JOB_TIMEOUT, when=None):
    """Run `argv` in its own process group; kill the group if it outlives `timeout`.

    `when` is ``(condition, action)``: ``action(pid)`` runs once ``condition(output so
    far)`` holds (e.g. send a signal mid-run)."""
    env = child_env()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT, start_new_session=True, text=True)
    expired = threading.Event()

    def kill_job():
        expired.set()
        below = _descendants([proc.pid])  # horovodrun's workers run in sessions of their own
        os.killpg(proc.pid, signal.SIGKILL)
        _kill_all(below)

    timer = threading.Timer(timeout, kill_job)
    timer.start()
    output = ''
    try:
        for line in proc.stdout:
            output += line
            if when is not None and when[0](output):
                when[1](proc.pid)
                when = None
        proc.wait()
    finally:
        timer.cancel()
    if expired.is_set():
        pytest.fail('job still running after {} s:\n{}'.format(timeout, output[-3000:]))
    return proc.returncode, output


LAUNCH = [sys.executable, os.path.join(ROOT, 'scripts', 'launch.py'), '--horovod', '-n', '2',
          '--timeout', str(JOB_TIMEOUT - 20), '--']


def launch(*args, when=None):
    """The launcher's Horovod mode, as a user types it."""
    return run_job(LAUNCH + list(args), when=when)


def assert_stopped_cleanly(code, output, signal_name, iteration):
    """How a stopped job must end under the launcher, as for dist_sync: the signal's exit
    code, each worker's line, the launcher's line, and nothing of horovodrun's own."""
    line = 'stopped by {} at epoch 0, iteration {}; continue with --resume auto'.format(
        signal_name, iteration)
    assert code == 128 + getattr(signal, signal_name), output[-3000:]
    assert output.count(line) == 2, output[-3000:]  # both workers' lines reach the log
    assert ('launch: the 2 workers stopped after {} (a training job continues with --resume '
            'auto)'.format(signal_name)) in output.splitlines()[-1], output[-3000:]
    for noise in ('Traceback', 'RuntimeError', 'exit with status code', 'exited with code'):
        assert noise not in output, output[-3000:]


def train_reference(data_root, out, *extra):
    """One process, cpu:0 + cpu:1, batch 4, context k fed worker k's shard; 2 epochs.

    Returns (weights, optimizer arrays, skipped steps) as rank 0 would save them: the run
    state's FP32 weights (FP16 runs: the masters) with context 0's BN statistics.
    """
    # No start-up self-check here: the reference is only a reference (the workers keep
    # theirs, so a check that disturbed the run would show as a difference).
    loop = train_on_two_contexts(data_root, out, cli_args(
        data_root, out, '--ctx', 'cpu:0,cpu:1', '--batch-size', '4', '--kvstore', 'device',
        '--no-self-check', *extra))
    assert loop.iteration == 2 * STEPS_PER_EPOCH
    weights, optimizer = numpy_state(loop.capture())
    skips = loop.scaler.total_skips if loop.scaling_active else 0
    return weights, optimizer, skips


def numpy_state(state):
    """(weights, optimizer arrays) of a `RunState` as numpy: FP32 weights (FP16 runs: the
    masters) and the optimizer's arrays (momentum) by parameter name."""
    return ({k: v.asnumpy() for k, v in state.weights.items()},
            {k: v.asnumpy() for k, v in state.optimizer.arrays.items()})


def assert_equal_runs(hvd_ckpt, ref_weights, ref_optimizer):
    """Rank 0's checkpoint equals the reference: weights (FP16 runs: the FP32 masters; BN
    statistics) and optimizer state (momentum)."""
    weights, optimizer = numpy_state(load_run_state(hvd_ckpt))
    worst = 0.0
    for what, ours, ref in (('weights', weights, ref_weights),
                            ('optimizer', optimizer, ref_optimizer)):
        report = compare_params(ours, ref)
        print(what, '\n'.join(report.format(TOL, top=3)))
        assert report.structure_matches and report.rows, what
        assert not report.above(TOL), '{}: {}'.format(what, report.summary(TOL))
        worst = max([worst] + [r.max_rel for r in report.rows])
    return worst


def read_log(out, name='_train.log'):
    with open(os.path.join(str(out), RUN + name)) as f:
        return f.read()


@needs_horovod
def test_fp32_two_workers_equal_one_process_and_only_rank_0_writes(synthetic_root, tmp_path):
    out = tmp_path / 'hvd'
    code, output = launch(sys.executable, 'train_yolo3.py', *worker_args(synthetic_root, out))
    assert code == 0, output[-3000:]
    assert 'launch: all 2 workers finished' in output

    ref, ref_optimizer, _ = train_reference(synthetic_root, tmp_path / 'ref')
    worst = assert_equal_runs(str(out / (RUN + '_last.ckpt')), ref, ref_optimizer)
    moved = max(r.max_rel for r in compare_params(ref, _initial_params(synthetic_root)).rows)
    assert moved > 100 * TOL, 'the weights barely moved; the comparison proves nothing'
    print('fp32: worst max_rel {:.3g}, moved {:.3g}'.format(worst, moved))

    main, rank1 = read_log(out), read_log(out, '_train.rank1.log')
    assert main.count('2 workers x batch 2 = global batch 4; gradients averaged over the '
                      'global batch; --lr 0.01 is used as given') == 1
    assert main.count('arguments:') == 1 and main.count('[Epoch 1][Batch 5]') == 1
    assert main.count('] validation:') == 2 and '] validation:' not in rank1
    assert '[Epoch 1][Batch 5]' in rank1  # rank 1 trained, into its own log
    # each worker its own shard: different data, so different first losses
    assert _first_loss(main) != _first_loss(rank1)
    assert sorted(os.listdir(str(out))) == sorted(
        RUN + s for s in ('_train.log', '_train.rank1.log', '_metrics.csv', '_steps.csv',
                          '_last.ckpt', '_best.ckpt', '_best.params', '_best_map.log',
                          '_0000_0.0000.params', '_anchors.json'))
    # one writer: a row per step and per epoch (two writers would double or mangle them)
    assert len(list(csv.DictReader(read_log(out, '_steps.csv').splitlines()))) == 12
    assert len(list(csv.DictReader(read_log(out, '_metrics.csv').splitlines()))) == 2


def _first_loss(log):
    line = next(l for l in log.splitlines() if '[Epoch 0][Batch 0]' in l)
    return line.split('obj_loss=')[1].split(',')[0]


@functools.lru_cache(maxsize=1)
def _initial_params(data_root):
    """The weights every run starts from: a fresh build with the same seed (built once;
    callers only read it)."""
    cfg = train_cli.make_config(train_cli.parse_args(cli_args(
        data_root, '/nonexistent', '--gpus', '', '--batch-size', '2')))
    fresh, _ = build_training(cfg)
    return {k: v.asnumpy() for k, v in structural_params(fresh.net).items()}


# Whether a step overflows at this scale depends on the CPU's kernels: the run must equal
# the one-process reference either way. Skips on purpose are the fault-injection test's
# (test_rank_1_alone_overflows_then_nans_and_every_worker_skips_and_rolls_back).
FP16 = ('--fp16', '--loss-scale', '0.25', '--lr', '0.001')


@needs_horovod
def test_fp16_run_preempted_through_the_launcher_and_resumed_equals_one_process(
        synthetic_root, tmp_path):
    """launch.py gets SIGTERM mid-epoch 0 (as a preempted job does): it passes it on, the
    workers stop after one step, rank 0 saves, and the job ends like a preempted dist_sync
    job. Then --resume auto through horovodrun and `sh -c`, as docs/distributed.md gives
    it, finishes the run, which ends where the uninterrupted reference does."""
    out = tmp_path / 'hvd'
    args = worker_args(synthetic_root, out, *FP16)
    code, output = launch(sys.executable, 'train_yolo3.py', *args,
                          when=(lambda text: '[Epoch 0][Batch 1]' in text,
                                lambda pid: os.kill(pid, signal.SIGTERM)))
    assert code == 128 + signal.SIGTERM, output[-3000:]
    stopped_at = load_run_state(str(out / (RUN + '_last.ckpt'))).meta['iteration']
    assert 2 <= stopped_at < STEPS_PER_EPOCH, output[-3000:]  # mid-epoch 0
    assert_stopped_cleanly(code, output, 'SIGTERM', stopped_at)
    command = ' '.join(shlex.quote(a) for a in
                       [sys.executable, 'train_yolo3.py', *args, '--resume', 'auto'])
    code, output = run_job([find_horovodrun(), '--gloo', '-np', '2', '-H', 'localhost:2',
                            'sh', '-c', command])
    assert code == 0, output[-3000:]
    main = read_log(out)
    assert main.count('[Epoch 1][Batch 5]') == 1 and '[Epoch 0][Batch 0]' in main
    rows = list(csv.DictReader(read_log(out, '_metrics.csv').splitlines()))
    skipped = [int(row['skipped_steps']) for row in rows]
    assert len(skipped) == 2 and sum(skipped) < 2 * STEPS_PER_EPOCH, skipped

    ref, ref_optimizer, ref_skips = train_reference(synthetic_root, tmp_path / 'ref', *FP16)
    assert ref_skips == sum(skipped)  # the same steps were skipped
    worst = assert_equal_runs(str(out / (RUN + '_last.ckpt')), ref, ref_optimizer)
    moved = max(r.max_rel for r in compare_params(ref, _initial_params(synthetic_root)).rows)
    assert moved > 100 * TOL, 'the weights barely moved; the comparison proves nothing'
    print('fp16: worst max_rel {:.3g}, moved {:.3g}, skipped {}'.format(worst, moved, skipped))


@needs_horovod
def test_horovodrun_without_sh_c_takes_network_for_its_own_option():
    """Why the launcher and the docs wrap the command in `sh -c` (horovodrun 0.28.1)."""
    code, output = run_job([find_horovodrun(), '--gloo', '-np', '2', '-H', 'localhost:2',
                            sys.executable, 'train_yolo3.py', '--horovod', '--network',
                            'mobilenet0.25'], timeout=60)
    assert code != 0 and 'ambiguous option: --network could match' in output, output[-2000:]


def run_worker_job(out, mode, launcher=False, when=None):
    """tests/horovod_worker.py on 2 Horovod workers, started by horovodrun (or by the
    launcher); returns (exit code, output, results)."""
    worker = [sys.executable, os.path.join(ROOT, 'tests', 'horovod_worker.py'), str(out), mode]
    code, output = run_job(
        (LAUNCH if launcher else [find_horovodrun(), '--gloo', '-np', '2', '-H',
                                  'localhost:2']) + worker, when=when)
    results = []
    for rank in range(2):
        path = os.path.join(str(out), 'rank{}.json'.format(rank))
        results.append(json.loads(Path(path).read_text()) if os.path.exists(path) else None)
    return code, output, results


@needs_horovod
def test_rank_1_alone_overflows_then_nans_and_every_worker_skips_and_rolls_back(tmp_path):
    """The loss-scale check reads the all-reduced gradients, so rank 1's local inf makes
    both skip step 2; the health vote is an allreduce, so rank 1's NaN loss makes both roll
    back at iteration 4, train one iteration in FP32 (a new DistributedTrainer) and return
    to FP16, ending with identical weights (BN statistics are each worker's own)."""
    code, output, runs = run_worker_job(tmp_path, 'rollback')
    assert code == 0, output[-3000:]
    assert runs[0]['skipped'] == runs[1]['skipped'] and runs[0]['skipped'][0] == 2, runs
    for run in runs:
        assert run['recoveries'] == 1 and run['iteration'] == 6 and run['phase'] == 'fp16'
        assert [e['iteration'] for e in run['events']] == [4], run
    assert runs[0]['events'][0]['reason'] == 'another worker reported an unhealthy step'
    assert runs[1]['events'][0]['reason'].startswith('non-finite loss')
    params = [mx.nd.load(str(tmp_path / 'rank{}.params'.format(r))) for r in range(2)]
    compared = 0
    for name, value in params[0].items():
        assert np.isfinite(value.asnumpy()).all(), name
        if not name.endswith(('running_mean', 'running_var')):
            assert np.array_equal(value.asnumpy(), params[1][name].asnumpy()), name
            compared += 1
    assert compared > 100


@needs_horovod
def test_workers_give_up_together_after_rank_0_saved_the_last_good_state(tmp_path):
    code, output, runs = run_worker_job(tmp_path, 'giveup')
    assert code != 0, output[-3000:]  # a worker failed: the job fails
    for run in runs:
        assert run['iteration'] == 5 and 'after 1 recoveries' in run['diverged'], run
        assert [e['iteration'] for e in run['events']] == [3, 5], run
    path = str(tmp_path / 'run_diverged.ckpt')
    assert 'The last good state (iteration 4) is in ' + path in runs[0]['diverged'], runs[0]
    assert sorted(os.listdir(str(tmp_path))) == ['rank0.json', 'rank1.json', 'run_diverged.ckpt']
    params = read_params(path)  # complete and readable: rank 1 waited for it
    assert params and all(np.isfinite(v).all() for v in params.values())


@needs_horovod
def test_a_killed_worker_stops_the_job_with_a_message(tmp_path):
    code, output, runs = run_worker_job(tmp_path, 'die')
    assert code != 0
    assert 'Process 1 exit with status code 137' in output, output[-3000:]
    assert 'Terminating remaining workers after failure of Process 1' in output
    # neither finished: rank 1 died, rank 0 was stopped (or failed in its next allreduce)
    assert runs[1] is None and (runs[0] is None or runs[0]['iteration'] < 6), runs
    assert not os.path.exists(str(tmp_path / 'rank0.params'))


@needs_horovod
def test_sigterm_to_one_worker_stops_both_after_one_step_and_the_launcher_exits_143(tmp_path):
    """Rank 1 alone gets SIGTERM after step 2 (as when a scheduler signals the worker
    processes): the vote (an allreduce) stops both after step 3; rank 0 saved that
    iteration before either exited 143, and the launcher ends the job as a stop."""
    code, output, runs = run_worker_job(tmp_path, 'stop', launcher=True)
    assert_stopped_cleanly(code, output, 'SIGTERM', 3)
    line = 'stopped by SIGTERM at epoch 0, iteration 3; continue with --resume auto'
    assert [r['stopped'] for r in runs] == [line, line], runs
    state = load_run_state(str(tmp_path / 'run_last.ckpt'))
    assert state.meta['iteration'] == 3 and not state.meta['epoch_done']


@needs_horovod
def test_ctrl_c_to_the_launcher_stops_both_workers_after_one_step_with_130(tmp_path):
    """Both workers wait after step 2 until a signal reaches them; the launcher gets SIGINT
    (Ctrl-C) and passes it on to the worker processes themselves, not to horovodrun (whose
    own handling would SIGTERM them and kill them 5 s later)."""
    code, output, runs = run_worker_job(
        tmp_path, 'wait', launcher=True,
        when=(lambda text: text.count(' waits for a signal') == 2,
              lambda pid: os.kill(pid, signal.SIGINT)))
    assert 'launch: SIGINT received: passed on to the workers' in output, output[-3000:]
    assert_stopped_cleanly(code, output, 'SIGINT', 3)
    assert [r['iteration'] for r in runs] == [3, 3], runs
    state = load_run_state(str(tmp_path / 'run_last.ckpt'))
    assert state.meta['iteration'] == 3 and not state.meta['epoch_done']


@needs_horovod
def test_launcher_timeout_stops_horovodrun_and_its_workers():
    marker = 'hvd-timeout-test-{}'.format(os.getpid())
    code, output = run_job([sys.executable, os.path.join(ROOT, 'scripts', 'launch.py'),
                            '--horovod', '-n', '2', '--timeout', '5', '--', sys.executable,
                            '-c', 'import time; time.sleep(120)  # ' + marker], timeout=90)
    assert code == 124 and 'ran longer than its timeout (5 s)' in output, output[-2000:]
    for _ in range(20):  # horovod's per-worker middlemen stop the workers on their own
        left = subprocess.run(['pgrep', '-f', marker], stdout=subprocess.PIPE, text=True)
        if not left.stdout.strip():
            break
        time.sleep(0.5)
    assert not left.stdout.strip(), 'workers left running: ' + left.stdout


# ----- no Horovod needed ------------------------------------------------------------------
def _cli_error(capsys, *args):
    code = train_cli.main(['--dataset', 'synthetic', '--network', 'mobilenet0.25',
                             '--data-shape', '64', '--no-plots', '-j', '0', '--horovod',
                             *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_syncbn_under_horovod_is_refused_with_the_alternative(capsys, tmp_path):
    err = _cli_error(capsys, '--gpus', '', '--syncbn', '--save-prefix', str(tmp_path) + '/')
    assert err.startswith('error: --syncbn with --horovod') and '--gpus 0,1,2,3 --syncbn' in err


def test_several_cpu_contexts_in_one_horovod_process_are_refused(capsys, tmp_path):
    err = _cli_error(capsys, '--ctx', 'cpu:0,cpu:1', '--batch-size', '2',
                     '--save-prefix', str(tmp_path) + '/')
    assert 'one device per process' in err and 'horovodrun -np N' in err


class FakeHvd:
    """Stands in for horovod.mxnet: the other worker votes `others`."""
    Sum = 'sum'

    def __init__(self, others):
        self.others, self.calls = others, []

    def allreduce(self, tensor, op=None, name=None):
        self.calls.append((op, name))
        return tensor + self.others


@pytest.mark.parametrize('mine, others, agreed', [
    ((True, None), [1, 0, 0, 0], (True, None)),
    ((True, None), [0, 0, 0, 0], (False, None)),
    ((False, None), [1, 0, 0, 0], (False, None)),
    ((True, None), [1, 1, 0, 0], (True, 'SIGTERM')),      # the other worker got SIGTERM
    ((True, 'SIGINT'), [1, 0, 0, 0], (True, 'SIGINT')),
    ((True, 'SIGINT'), [1, 1, 0, 0], (True, 'SIGTERM')),  # SIGTERM wins
    ((True, None), [1, 0, 0, 1], (True, 'request')),      # the other worker's hook asked
    ((True, 'request'), [1, 0, 1, 0], (True, 'SIGINT'))])  # a signal before a request
def test_the_step_vote_is_a_horovod_sum(mine, others, agreed):
    hvd = FakeHvd(mx.nd.array(others))
    workers = WorkerSetup(None, 0, 2, hvd=hvd)
    assert workers.vote(*mine) == agreed
    assert hvd.calls == [('sum', 'gluoncv_fp16.step_vote')]
    assert WorkerSetup(None, 0, 1, hvd=hvd).vote(*mine) == mine and len(hvd.calls) == 1


def test_each_horovod_process_gets_one_device_by_local_rank():
    assert horovod_device([mx.cpu(0)], 1) == mx.cpu(0)
    assert horovod_device([mx.gpu(0)], 3) == mx.gpu(3)  # GluonCV: gpu(local_rank)
    assert horovod_device([mx.gpu(2)], 1) == mx.gpu(3)
    assert horovod_device([mx.gpu(4), mx.gpu(6)], 1) == mx.gpu(6)
    with pytest.raises(ConfigError, match='local rank 2 has no GPU of the 2 listed'):
        horovod_device([mx.gpu(4), mx.gpu(6)], 2)


def test_horovod_not_installed_is_one_line_naming_the_install_script(capsys, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setitem(sys.modules, 'horovod.mxnet', None)  # import fails even if installed
    err = _cli_error(capsys, '--gpus', '', '--save-prefix', str(tmp_path) + '/')
    assert err.startswith('error: Horovod is not installed: build it against this '
                          "environment's MXNet with bash scripts/install_horovod.sh"), err
