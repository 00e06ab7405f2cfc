"""Start a Horovod job with ``horovodrun`` so that the training command reaches the
workers exactly as typed.

Why a wrapper is needed (measured with horovodrun 0.28.1): horovodrun parses options it
finds inside the launched command as abbreviations of its own. ``horovodrun -np 2 python
train_yolo3.py --network darknet53`` stops before starting with "ambiguous option:
--network could match --network-interfaces, --network-interface"; ``--network=x`` fails
the same way, and ``--`` before the command makes it run ``--``. Handing horovodrun
``sh -c '<the command, shell-quoted>'`` leaves it one argument that is no option, and the
shell on each worker splits it back into the original words.

horovodrun itself supervises the workers: when one exits non-zero (or is killed) it
terminates the others and exits 1 naming the first failed process.
"""
import collections
import os
import shlex
import shutil
import sys

from .launcher import LaunchError, ProcessSpec

__all__ = ['find_horovodrun', 'horovod_hosts', 'horovodrun_argv', 'plan_horovod']


def find_horovodrun():
    """Path of ``horovodrun``: next to this Python first (a virtualenv's bin), else PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    found = beside if os.access(beside, os.X_OK) else shutil.which('horovodrun')
    if not found:
        raise LaunchError("horovodrun not found: build Horovod into this environment with "
                          "bash scripts/install_horovod.sh")
    return found


def horovod_hosts(num_workers, hosts=None):
    """horovodrun's ``-H`` value and ssh port for `num_workers` processes.

    Parameters
    ----------
    num_workers : int
    hosts : list of (str, int), optional
        From :func:`.launcher.read_hostfile`; processes go round robin over them, as
        with the dist_sync launcher. None: all on this machine (``localhost:N``).

    Returns
    -------
    (str, int or None)
        e.g. ``('node1:2,node2:2', None)``; the port when every host uses the same
        non-default one (horovodrun has a single ``--ssh-port``).
    """
    if num_workers < 1:
        raise LaunchError("need at least one worker, got -n {}".format(num_workers))
    if not hosts:
        return 'localhost:{}'.format(num_workers), None
    slots = collections.Counter(hosts[i % len(hosts)][0] for i in range(num_workers))
    ports = {port for host, port in hosts if host in slots}
    if len(ports) > 1:
        raise LaunchError("horovodrun uses one ssh port for every host, the hostfile names "
                          "{}; use the same port everywhere (or ~/.ssh/config)".format(
                              sorted(ports)))
    port = ports.pop()
    spec = ','.join('{}:{}'.format(host, count) for host, count in slots.items())
    return spec, (None if port == 22 else port)


def horovodrun_argv(num_workers, command, hosts=None, horovodrun=None):
    """``horovodrun --gloo -np N -H ... sh -c '<command>'`` as an argv list.

    Parameters
    ----------
    command : list of str
        The program every worker runs, e.g. ``['python', 'train_yolo3.py', '--horovod']``.
    hosts : list of (str, int), optional
        See :func:`horovod_hosts`.
    """
    if not command:
        raise LaunchError("no command to launch: put it after '--', e.g. launch.py --horovod "
                          "-n 2 -- python train_yolo3.py --horovod ...")
    spec, port = horovod_hosts(num_workers, hosts)
    argv = [horovodrun or find_horovodrun(), '--gloo', '-np', str(num_workers), '-H', spec]
    if port is not None:
        argv += ['-p', str(port)]
    return argv + ['sh', '-c', ' '.join(shlex.quote(word) for word in command)]


def plan_horovod(num_workers, command, hosts=None):
    """The job as one process (horovodrun) for :func:`.launcher.run` to supervise."""
    return [ProcessSpec('horovodrun', 'worker', horovodrun_argv(num_workers, command, hosts),
                        {}, 'localhost')]
