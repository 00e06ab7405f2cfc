"""The data-pipeline benchmark runs end to end and prints every table (tiny settings), and
the benchmarks' environment: set by the script before MXNet starts, by the module's
``python -m`` run through running itself again.

It runs as a subprocess: the benchmark wants OMP_NUM_THREADS set before MXNet starts,
which must not leak into the other tests' environment.
"""
import os
import subprocess
import sys

from helpers import ROOT, child_env
from gluoncv_fp16.bench import machine
from gluoncv_fp16.bench.data_pipeline import thread_environment

THREAD_VARIABLES = ('OMP_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS')


def test_benchmark_data_prints_stages_main_process_cache_and_sizing():
    env = child_env()
    for name in THREAD_VARIABLES:  # unset: the module runs itself again with them
        env.pop(name, None)
    res = subprocess.run(
        [sys.executable, '-m', 'gluoncv_fp16.bench.data_pipeline', '--network',
         'yolo3_mobilenet0.25_voc', '--size', '64', '--image-size', '96x72', '--batch-size',
         '2', '--rounds', '1', '--stage-images', '2', '--main-batches', '1', '--workers', '1',
         '--target-ips', '500', '--wrap-rounds', '2'],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    out = res.stdout
    assert res.returncode == 0, res.stderr[-3000:]
    for stage in ('decode', 'augment', 'targets', 'batchify', 'transfer', 'total'):
        assert '\n  {} '.format(stage) in out
    assert 'simplejpeg' in out and 'faster' in out
    assert 'gluoncv_fp16 dense (before)' in out and 'main thread' in out and 'enqueue' in out
    assert 'in step' in out
    assert 'in epoch 0, 0 in epoch 1' in out  # --cache ram: the second epoch decodes nothing
    assert 'uint8 image vs float32 image' in out and 'grey levels' in out
    assert 'to feed 500 img/s' in out and 'worker cores' in out
    assert 'from_numpy(zero_copy=True) (current)' in out


def test_one_compute_thread_unless_all_threads():
    assert thread_environment(['--rounds', '3']) == dict.fromkeys(THREAD_VARIABLES, '1')
    assert thread_environment(['--rounds', '3', '--all-threads']) == {}


def test_benchmark_data_script_sets_the_modules_environment_before_any_import():
    with open(os.path.join(ROOT, 'scripts', 'benchmark_data.py'), encoding='utf-8') as f:
        text = f.read()
    for name, value in thread_environment([]).items():
        assert text.index("os.environ.setdefault('{}', '{}')".format(name, value)) < \
            text.index('\nfrom gluoncv_fp16')


def test_rerun_with_environment_execs_the_same_command_with_only_the_unset_variables(
        monkeypatch):
    calls = []
    monkeypatch.setattr(machine.os, 'execve', lambda *args: calls.append(args))
    monkeypatch.setenv('OMP_NUM_THREADS', '4')  # set by the user: kept
    monkeypatch.delenv('MXNET_CPU_WORKER_NTHREADS', raising=False)
    machine.rerun_with_environment('gluoncv_fp16.bench.x', thread_environment([]),
                                   ['--rounds', '3'])
    [(path, argv, env)] = calls
    assert path == sys.executable
    assert argv == [sys.executable, '-m', 'gluoncv_fp16.bench.x', '--rounds', '3']
    assert env['OMP_NUM_THREADS'] == '4' and env['MXNET_CPU_WORKER_NTHREADS'] == '1'
    assert 'MXNET_CPU_WORKER_NTHREADS' not in os.environ  # this process is left as it was


def test_rerun_with_environment_returns_when_every_variable_is_set(monkeypatch):
    monkeypatch.setattr(machine.os, 'execve', lambda *args: _refuse_exec(args))
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, '2')
    assert machine.rerun_with_environment('gluoncv_fp16.bench.x', thread_environment([]),
                                          []) is None


def _refuse_exec(args):
    raise AssertionError('re-ran although every variable was set: {}'.format(args))
