"""scripts/launch.py --horovod: the horovodrun command line it builds, and its refusals.
No Horovod needed (tests/test_horovod.py runs the jobs)."""
import os
import shlex
import sys

import pytest

from gluoncv_fp16.dist.horovod_launch import horovod_hosts, horovodrun_argv
from gluoncv_fp16.dist.launcher import LaunchError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import launch  # noqa: E402  (scripts/launch.py)


def test_the_command_reaches_the_workers_as_one_sh_c_argument():
    command = ['python', 'train_yolo3.py', '--horovod', '--network', 'darknet53', '--gpus',
               '', '--save-prefix', 'runs/a b/']
    argv = horovodrun_argv(2, command, horovodrun='horovodrun')
    assert argv[:6] == ['horovodrun', '--gloo', '-np', '2', '-H', 'localhost:2']
    assert argv[6:8] == ['sh', '-c'] and len(argv) == 9
    assert not any(a.startswith('--network') for a in argv[:8])  # horovodrun never sees it
    assert shlex.split(argv[8]) == command  # the shell gives back the exact words


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


def test_launch_plan_uses_the_hostfile_and_passes_env(tmp_path):
    hosts = tmp_path / 'hosts.txt'
    hosts.write_text('node1 slots=4\nnode2\n')
    args = launch.parse_args(['--horovod', '-n', '4', '-H', str(hosts), '--env', 'A:1',
                              '--env-worker', 'B:2', '--', 'python', 'train_yolo3.py'])
    (spec,) = launch.make_plan(args)
    assert spec.name == 'horovodrun' and spec.env == {'A': '1', 'B': '2'}
    assert spec.argv[1:6] == ['--gloo', '-np', '4', '-H', 'node1:2,node2:2']
    assert spec.argv[-3:] == ['sh', '-c', 'python train_yolo3.py']


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
