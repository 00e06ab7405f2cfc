"""scripts/launch.py + distributed.launcher: a real dist_sync job on loopback, failures, ssh plans.

Jobs run on 127.0.0.1 with a bounded `timeout`; `run()` kills every process it started
on the way out, and the tests check that no process is left.
"""
import io
import os
import shlex
import signal
import sys
import threading
import time
import _thread

import pytest

from helpers import ROOT
from gluoncv_fp16.distributed.launcher import (INDEX_ENV, LaunchError, ProcessSpec, plan_local,
                                          read_hostfile, run)
from gluoncv_fp16.distributed import launch

JOB_TIMEOUT = 60  # s; a 2-worker job takes ~5 s on 2 cores

WORKER = '''
import os, sys
open(os.path.join({out!r}, 'pid-%d' % os.getpid()), 'w').close()  # every role, so
import mxnet as mx  # before this import turns scheduler and server into ps-lite nodes
from gluoncv_fp16.distributed.distributed import fail_fast, worker_info
kv = mx.kv.create('dist_sync')
with fail_fast():
    if os.environ[{index!r}] == os.environ.get('FAIL_WORKER'):
        raise RuntimeError('boom on purpose')
    rank, size = worker_info(kv)
    kv.init('x', mx.nd.zeros(1))
    kv.push('x', mx.nd.ones(1) * (rank + 1))
    out = mx.nd.zeros(1)
    kv.pull('x', out=out)
    print('rank %d of %d pulled %g' % (rank, size, out.asscalar()), flush=True)
'''


def write_worker(tmp_path):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER.format(out=str(tmp_path), index=INDEX_ENV))
    return str(script)


def assert_all_gone(tmp_path):
    """Every process that wrote a pid file has exited (and was reaped)."""
    for pid_file in tmp_path.glob('pid-*'):
        pid = int(pid_file.name.split('-')[1])
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def job(tmp_path, monkeypatch, fail_worker=None):
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
    if fail_worker is not None:
        monkeypatch.setenv('FAIL_WORKER', str(fail_worker))
    args = launch.parse_args(['-n', '2', '-s', '1', '--', sys.executable,
                              write_worker(tmp_path)])
    return launch.make_plan(args)


def test_two_workers_one_server_push_and_pull_the_sum(tmp_path, monkeypatch, caplog):
    out = io.StringIO()
    code = run(job(tmp_path, monkeypatch), out=out, timeout=JOB_TIMEOUT)
    lines = out.getvalue().splitlines()
    assert code == 0, out.getvalue()[-3000:]
    pulled = [line for line in lines if 'pulled' in line]
    # ps-lite assigns ranks in order of registration, not launch order.
    assert sorted(line.split('] ', 1)[1] for line in pulled) == [
        'rank 0 of 2 pulled 3', 'rank 1 of 2 pulled 3']
    assert {line.split(']')[0] for line in pulled} == {'[worker 0', '[worker 1'}
    assert len(list(tmp_path.glob('pid-*'))) == 4  # scheduler, server, 2 workers
    assert_all_gone(tmp_path)


def test_failing_worker_stops_the_job_quickly_and_is_named(tmp_path, monkeypatch, caplog):
    out = io.StringIO()
    start = time.monotonic()
    code = run(job(tmp_path, monkeypatch, fail_worker=1), out=out, timeout=JOB_TIMEOUT)
    elapsed = time.monotonic() - start
    assert code == 1, out.getvalue()[-3000:]
    assert elapsed < JOB_TIMEOUT / 2, 'the launcher waited for the timeout'
    assert 'worker 1 (pid' in caplog.text and 'exited with code 1' in caplog.text
    assert '[worker 1] ' in out.getvalue() and 'boom on purpose' in out.getvalue()
    assert_all_gone(tmp_path)


def sleepers(tmp_path, n=2):
    """A job of processes that only sleep (no MXNet): for supervision tests."""
    code = ("import os, time; open(os.path.join({!r}, 'pid-%d' % os.getpid()), 'w')"
            ".close(); print('up', flush=True); time.sleep(60)").format(str(tmp_path))
    return plan_local(n, 1, [sys.executable, '-c', code])


def wait_for_pid_files(tmp_path, count, limit=20):
    deadline = time.monotonic() + limit
    while len(list(tmp_path.glob('pid-*'))) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_ctrl_c_stops_every_process(tmp_path):
    # A background job of a non-interactive shell (how CI may start us) inherits SIGINT
    # as ignored, and then interrupt_main() does nothing: install the default handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        specs = sleepers(tmp_path)
        waiter = threading.Thread(target=lambda: (wait_for_pid_files(tmp_path, len(specs)),
                                                  _thread.interrupt_main()), daemon=True)
        waiter.start()
        assert run(specs, out=io.StringIO(), timeout=JOB_TIMEOUT) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(list(tmp_path.glob('pid-*'))) == len(specs)
    assert_all_gone(tmp_path)


STOPPER = """
import os, signal, sys, time
role = os.environ['DMLC_ROLE']
open(os.path.join({out!r}, 'role-%s-%d' % (role, os.getpid())), 'w').close()
open(os.path.join({out!r}, 'pid-%d' % os.getpid()), 'w').close()

def stop(signum, frame):  # as training does: finish the step (0.5 s), save, exit 128+sig
    time.sleep(0.5)
    open(os.path.join({out!r}, 'saved-%s-%d' % (role, os.getpid())), 'w').close()
    os._exit(128 + signum)

signal.signal(signal.SIGTERM, stop)
time.sleep(60)
"""


def test_sigterm_to_the_launcher_lets_the_workers_stop_and_save(tmp_path, caplog):
    """A preempted launcher passes SIGTERM on to the workers only and waits for them to
    stop cleanly (they save first); it exits 143 and names the signal."""
    specs = plan_local(2, 1, [sys.executable, '-c', STOPPER.format(out=str(tmp_path))])
    killer = threading.Thread(target=lambda: (wait_for_pid_files(tmp_path, len(specs)),
                                              os.kill(os.getpid(), signal.SIGTERM)),
                              daemon=True)
    previous = signal.getsignal(signal.SIGTERM)
    killer.start()
    assert run(specs, out=io.StringIO(), timeout=JOB_TIMEOUT) == 143
    assert signal.getsignal(signal.SIGTERM) is previous, 'the handler is restored'
    assert len(list(tmp_path.glob('saved-worker-*'))) == 2  # not killed while saving
    assert 'SIGTERM received: passed on to the workers' in caplog.text
    assert 'the 2 workers stopped after SIGTERM' in caplog.text
    assert_all_gone(tmp_path)


def test_a_worker_stopped_by_a_signal_lets_the_others_stop_at_their_step(tmp_path, caplog):
    """A worker exiting 143 (it got the SIGTERM itself) is a stop, not a failure: the
    others get time to stop too instead of being killed at once."""
    specs = plan_local(2, 1, [sys.executable, '-c', STOPPER.format(out=str(tmp_path))])

    def signal_workers():
        wait_for_pid_files(tmp_path, len(specs))
        for path in sorted(tmp_path.glob('role-worker-*')):
            os.kill(int(path.name.rsplit('-', 1)[1]), signal.SIGTERM)
            time.sleep(1.0)  # one after the other: the first has exited 143 by now

    threading.Thread(target=signal_workers, daemon=True).start()
    assert run(specs, out=io.StringIO(), timeout=JOB_TIMEOUT) == 143
    assert len(list(tmp_path.glob('saved-worker-*'))) == 2
    assert 'the 2 workers stopped after SIGTERM' in caplog.text
    assert_all_gone(tmp_path)


def test_workers_that_do_not_follow_a_stopped_one_are_stopped_after_the_timeout(tmp_path,
                                                                                 caplog):
    """Worker 0 stops on SIGTERM (exit 143); worker 1 ignores it. The launcher waits
    `shutdown_timeout` for worker 1, then stops the job with the signal's code."""
    code = STOPPER.format(out=str(tmp_path)).replace(
        "signal.signal(signal.SIGTERM, stop)",
        "signal.signal(signal.SIGTERM, stop if os.environ[{!r}] == '0' else signal.SIG_IGN)"
        .format(INDEX_ENV))
    specs = plan_local(2, 1, [sys.executable, '-c', code])

    def signal_first_worker():
        wait_for_pid_files(tmp_path, len(specs))
        for path in tmp_path.glob('role-worker-*'):
            os.kill(int(path.name.rsplit('-', 1)[1]), signal.SIGTERM)

    threading.Thread(target=signal_first_worker, daemon=True).start()
    start = time.monotonic()
    assert run(specs, out=io.StringIO(), timeout=JOB_TIMEOUT, shutdown_timeout=1.0,
               grace=1.0) == 143
    assert time.monotonic() - start < 30
    assert len(list(tmp_path.glob('saved-worker-*'))) == 1
    assert 'a worker stopped after SIGTERM but the others did not within 1 s' in caplog.text
    assert_all_gone(tmp_path)


def test_timeout_stops_a_hung_job(tmp_path, caplog):
    start = time.monotonic()
    assert run(sleepers(tmp_path), out=io.StringIO(), timeout=1.5, grace=1) == 124
    assert time.monotonic() - start < 15
    assert 'longer than its timeout' in caplog.text
    assert_all_gone(tmp_path)


def test_local_plan_sets_what_ps_lite_reads():
    specs = plan_local(2, 1, ['python', 'train.py'], port=9123, verbose=1,
                       env={'all': {'A': '1'}, 'worker': {'OMP_NUM_THREADS': '2'}})
    assert [s.name for s in specs] == ['scheduler', 'server 0', 'worker 0', 'worker 1']
    for spec in specs:
        assert spec.argv == ['python', 'train.py']
        assert {k: spec.env[k] for k in ('DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT',
                                         'DMLC_NUM_WORKER', 'DMLC_NUM_SERVER',
                                         'DMLC_NODE_HOST', 'PS_VERBOSE', 'A')} == {
            'DMLC_PS_ROOT_URI': '127.0.0.1', 'DMLC_PS_ROOT_PORT': '9123',
            'DMLC_NUM_WORKER': '2', 'DMLC_NUM_SERVER': '1', 'DMLC_NODE_HOST': '127.0.0.1',
            'PS_VERBOSE': '1', 'A': '1'}
        assert spec.env['DMLC_ROLE'] == spec.role
        assert ('OMP_NUM_THREADS' in spec.env) == (spec.role == 'worker')
    assert [s.env[INDEX_ENV] for s in specs] == ['0', '0', '0', '1']


def test_hostfile_parsing(tmp_path):
    path = tmp_path / 'hosts'
    path.write_text('# cluster\nnode-a\n\nnode-b:2222  # spare port\n10.0.0.3 slots=8\n')
    assert read_hostfile(str(path)) == [('node-a', 22), ('node-b', 2222), ('10.0.0.3', 22)]
    path.write_text('node-a:ssh\n')
    with pytest.raises(LaunchError, match="line 1: expected 'host' or 'host:port'"):
        read_hostfile(str(path))
    path.write_text('# nothing\n')
    with pytest.raises(LaunchError, match='lists no hosts'):
        read_hostfile(str(path))
    with pytest.raises(LaunchError, match='cannot read hostfile'):
        read_hostfile(str(tmp_path / 'missing'))


def test_ssh_plan_command_lines(tmp_path, monkeypatch):
    monkeypatch.setenv('MXNET_CPU_TEMP_COPY', '64')
    monkeypatch.setenv('MY_VAR', 'x y')
    hosts = tmp_path / 'hosts'
    hosts.write_text('node-a\nnode-b:2222\n')
    args = launch.parse_args(['-n', '3', '-s', '2', '-H', str(hosts), '--host-ip', '10.0.0.1',
                              '--port', '9200', '--workdir', '/srv/job dir', '--env', 'MY_VAR',
                              '--env-worker', 'OMP_NUM_THREADS:4', '--', 'python',
                              'train_yolo3.py', '--kvstore', 'dist_sync', '--save-prefix',
                              'runs/a b'])
    assert args.launcher == 'ssh'
    specs = launch.make_plan(args)
    assert [(s.name, s.host) for s in specs] == [
        ('scheduler', 'localhost'), ('server 0', 'node-a'), ('server 1', 'node-b'),
        ('worker 0', 'node-a'), ('worker 1', 'node-b'), ('worker 2', 'node-a')]
    scheduler = specs[0]
    assert scheduler.argv[0] == 'python' and scheduler.env['DMLC_ROLE'] == 'scheduler'
    assert scheduler.env['DMLC_PS_ROOT_URI'] == '10.0.0.1'
    worker = specs[4]
    assert worker.argv[:7] == ['ssh', '-tt', '-o', 'BatchMode=yes', '-o',
                               'StrictHostKeyChecking=accept-new', '-p']
    assert worker.argv[7:9] == ['2222', 'node-b']
    remote = shlex.split(worker.argv[9])
    assert remote[:4] == ['cd', '/srv/job dir', '&&', 'exec']
    assert remote[-6:] == ['python', 'train_yolo3.py', '--kvstore', 'dist_sync',
                           '--save-prefix', 'runs/a b']
    env = dict(item.split('=', 1) for item in remote[5:-6])
    assert remote[4] == 'env'
    assert env == dict(env, DMLC_ROLE='worker', DMLC_NODE_HOST='node-b',
                       DMLC_PS_ROOT_URI='10.0.0.1', DMLC_PS_ROOT_PORT='9200',
                       DMLC_NUM_WORKER='3', DMLC_NUM_SERVER='2', OMP_NUM_THREADS='4',
                       MXNET_CPU_TEMP_COPY='64', MY_VAR='x y', **{INDEX_ENV: '1'})
    server_env = dict(item.split('=', 1) for item in shlex.split(specs[1].argv[9])[5:-6])
    assert 'OMP_NUM_THREADS' not in server_env and server_env['DMLC_ROLE'] == 'server'


@pytest.mark.parametrize('argv, message', [
    (['-n', '0', '--', 'python', 'x.py'], 'at least one worker'),
    (['-n', '2'], 'no command to launch'),
    (['-n', '2', '--launcher', 'ssh', '--', 'python', 'x.py'], 'needs -H hostfile'),
])
def test_bad_requests_are_one_line_errors(argv, message, capsys):
    assert launch.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unstartable_command_is_a_launch_error():
    spec = ProcessSpec('worker 0', 'worker', ['/nonexistent/python'], {}, '127.0.0.1')
    with pytest.raises(LaunchError, match="cannot start '/nonexistent/python'"):
        run([spec], out=io.StringIO(), timeout=5)


@pytest.mark.parametrize('address, warned', [
    ('8.8.8.8', True), ('10.1.2.3', False), ('192.168.0.7', False), ('127.0.0.1', False),
    ('169.254.3.4', False), ('localhost', False)])
def test_scheduler_address_beyond_a_private_network_is_warned_about(address, warned, caplog):
    """ps-lite has no authentication: a public scheduler address gets one warning line."""
    from gluoncv_fp16.distributed.launcher import exposure_warning, plan_ssh
    message = exposure_warning(address)
    assert bool(message) == warned
    if warned:
        assert 'no authentication' in message and '\n' not in message
        with caplog.at_level('WARNING'):
            plan_ssh(1, 1, ['python', 'x.py'], [('h1', 22)], address, 9000)
        assert any('not a private' in r.getMessage() for r in caplog.records)


def test_ssh_pins_host_keys_and_passes_only_job_variables():
    from gluoncv_fp16.distributed.launcher import plan_ssh
    specs = plan_ssh(1, 1, ['python', 'x.py'], [('h1', 22)], '10.0.0.1', 9000)
    remote = [s for s in specs if s.role == 'worker'][0].argv
    assert 'StrictHostKeyChecking=accept-new' in remote
    names = [part.split('=')[0] for part in remote[-1].split() if '=' in part]
    assert all(n.startswith(('DMLC_', 'MXNET_', 'OMP_', 'KMP_')) or
               n in ('LD_LIBRARY_PATH', 'PYTHONPATH', 'GLUONCV_FP16_PROCESS_INDEX')
               for n in names), names
