"""scripts/launch.py --horovod: the horovodrun command line it builds, how it reads
horovodrun's output, and its refusals. No Horovod needed (tests/test_horovod.py runs the
jobs)."""
import io
import shlex
import sys

import pytest

from gluoncv_fp16.distributed.horovod_launch import HorovodRunner, horovod_hosts, horovodrun_argv
from gluoncv_fp16.distributed import launch
from gluoncv_fp16.distributed.launcher import LaunchError, ProcessSpec, run


def test_the_command_reaches_the_workers_as_one_sh_c_argument():
    command = ['python', 'train_yolo3.py', '--horovod', '--network', 'darknet53', '--gpus',
               '', '--save-prefix', 'runs/a b/']
    argv = horovodrun_argv(2, command, horovodrun='horovodrun')
    assert argv[:6] == ['horovodrun', '--gloo', '-np', '2', '-H', 'localhost:2']
    assert argv[6:8] == ['sh', '-c'] and len(argv) == 9
    assert not any(a.startswith('--network') for a in argv[:8])  # horovodrun never sees it
    # the shell gives back the exact words, and `exec` makes them the process horovodrun's
    # shell waits for (so that horovodrun's SIGTERM reaches the command)
    assert shlex.split(argv[8]) == ['exec'] + command


def test_hosts_get_processes_round_robin_and_one_ssh_port():
    assert horovod_hosts(3) == ('localhost:3', None)
    assert horovod_hosts(5, [('a', 22), ('b', 22)]) == ('a:3,b:2', None)
    assert horovod_hosts(2, [('a', 2222), ('b', 2222)]) == ('a:1,b:1', 2222)
    assert horovodrun_argv(2, ['python', 'x.py'], [('a', 2222), ('b', 2222)],
                           horovodrun='hr')[:8] == ['hr', '--gloo', '-np', '2', '-H', 'a:1,b:1',
                                                    '-p', '2222']
    with pytest.raises(LaunchError, match=r'one ssh port for every host.*\[22, 2222\]'):
        horovod_hosts(2, [('a', 22), ('b', 2222)])
    with pytest.raises(LaunchError, match='at least one worker'):
        horovod_hosts(0)
    with pytest.raises(LaunchError, match="no command to launch"):
        horovodrun_argv(2, [], horovodrun='hr')


def fake_horovodrun(tmp_path, monkeypatch):
    """A Python whose bin holds an executable `horovodrun` (never run), so that a plan can
    be made whether or not Horovod is installed here; returns its path."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    horovodrun = bin_dir / 'horovodrun'
    horovodrun.write_text('#!/bin/sh\nexit 99\n')
    horovodrun.chmod(0o755)
    monkeypatch.setattr(sys, 'executable', str(bin_dir / 'python'))
    return str(horovodrun)


def test_launch_plan_uses_the_hostfile_and_passes_env(tmp_path, monkeypatch):
    horovodrun = fake_horovodrun(tmp_path, monkeypatch)
    hosts = tmp_path / 'hosts.txt'
    hosts.write_text('node1 slots=4\nnode2\n')
    args = launch.parse_args(['--horovod', '-n', '4', '-H', str(hosts), '--env', 'A:1',
                              '--env-worker', 'B:2', '--', 'python', 'train_yolo3.py'])
    (spec,) = launch.make_plan(args)
    assert spec.name == 'horovodrun' and spec.env == {'A': '1', 'B': '2'}
    assert spec.argv[0] == horovodrun  # the one beside this Python, before PATH
    assert spec.argv[1:6] == ['--gloo', '-np', '4', '-H', 'node1:2,node2:2']
    assert spec.argv[-3:] == ['sh', '-c', 'exec python train_yolo3.py']
    assert spec.runner.num_workers == 4  # the launcher supervises horovodrun's 4 workers


def test_horovodrun_output_is_told_apart_from_its_workers_output():
    """What the launcher reads in horovodrun 0.28.1's output (measured in
    tests/test_horovod.py): the workers' lines, and its report of a worker's exit code."""
    runner = HorovodRunner(2)
    assert runner.worker_line('[1]<stderr>:stopped by SIGTERM at epoch 0\n') == (
        1, 'stopped by SIGTERM at epoch 0\n')
    assert runner.worker_line('[0]<stdout>:Process 1 exit with status code 1.\n') == (
        0, 'Process 1 exit with status code 1.\n')  # a worker's line, whatever it says
    assert runner.worker_line('Process 1 exit with status code 143.\n') is None
    assert runner.exit_report('Process 1 exit with status code 143.\n') == (1, 143)
    assert runner.exit_report('Terminating remaining workers after failure of Process 1.\n') \
        is None


# What horovodrun 0.28.1 prints when its two workers exit with `codes` (rank 1 first),
# as measured in tests/test_horovod.py: their lines, its reports, its traceback, exit 1.
FAKE_HOROVODRUN = """
import sys
codes = {codes!r}
print('[0]<stdout>:training', flush=True)
for rank in (1, 0):
    print('[%d]<stderr>:my last line' % rank, flush=True)
    print('Process %d exit with status code %d.' % (rank, codes[rank]), flush=True)
print('Traceback (most recent call last):', file=sys.stderr, flush=True)
print('RuntimeError: Horovod detected that one or more processes exited with non-zero '
      'status', file=sys.stderr, flush=True)
sys.exit(1)
"""


@pytest.mark.parametrize('codes, expected', [((143, 143), 143), ((130, 130), 130),
                                              ((143, 1), 1), ((137, 143), 1)])
def test_the_launcher_ends_a_horovod_job_by_its_workers_exit_codes(codes, expected, caplog):
    """Workers that all stopped on a signal end the job with its code and the launcher's
    line, horovodrun's own lines left out; any other code is horovodrun's failure, shown."""
    spec = ProcessSpec('horovodrun', 'worker', [sys.executable, '-c', FAKE_HOROVODRUN.format(
        codes=codes)], {}, 'localhost', HorovodRunner(2))
    out = io.StringIO()
    assert run([spec], out=out, timeout=30) == expected
    lines = out.getvalue().splitlines()
    assert [line for line in lines if line.startswith('[worker')] == [
        '[worker 0] training', '[worker 1] my last line', '[worker 0] my last line']
    if expected in (143, 130):
        assert len(lines) == 3, lines  # nothing of horovodrun's own
        name = 'SIGTERM' if expected == 143 else 'SIGINT'
        assert caplog.records[-1].getMessage() == (
            'launch: the 2 workers stopped after {} (a training job continues with --resume '
            'auto)'.format(name))
    else:
        assert '[horovodrun] RuntimeError: Horovod detected' in lines[-1]
        assert '[horovodrun] Process 1 exit with status code {}.'.format(codes[1]) in lines
        assert 'horovodrun (pid' in caplog.text and 'exited with code 1' in caplog.text


@pytest.mark.parametrize('extra, flag', [(['-s', '1'], '-s'), (['--port', '9000'], '--port'),
                                         (['--verbose', '1'], '--verbose')])
def test_dist_sync_options_are_refused_with_horovod(extra, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        launch.parse_args(['--horovod', '-n', '2'] + extra + ['--', 'true'])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        'error: {} only applies to dist_sync jobs, not --horovod'.format(flag))


def test_missing_horovodrun_names_the_install_script(tmp_path, monkeypatch, capsys):
    """A Python whose bin has no horovodrun, and a PATH without one."""
    monkeypatch.setattr(sys, 'executable', str(tmp_path / 'python'))
    monkeypatch.setenv('PATH', str(tmp_path))
    assert launch.main(['--horovod', '-n', '2', '--', 'true']) == 2
    assert capsys.readouterr().err.strip() == (
        'launch.py: error: horovodrun not found: build Horovod into this environment with '
        'bash scripts/install_horovod.sh')
