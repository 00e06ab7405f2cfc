"""Start a Horovod job with ``horovodrun`` so that the training command reaches the
workers exactly as typed.

Why a wrapper is needed (measured with horovodrun 0.28.1): horovodrun parses options it
finds inside the launched command as abbreviations of its own. ``horovodrun -np 2 python
train_yolo3.py --network darknet53`` stops before starting with "ambiguous option:
--network could match --network-interfaces, --network-interface"; ``--network=x`` fails
the same way, and ``--`` before the command makes it run ``--``. Handing horovodrun
``sh -c 'exec <the command, shell-quoted>'`` leaves it one argument that is no option,
and the shell on each worker splits it back into the original words. ``exec`` makes the
command itself the process horovodrun's shell waits for, so a SIGTERM horovodrun sends
reaches it (without ``exec`` it reaches only the inner shell, and the command runs on,
orphaned).

horovodrun itself supervises the workers: when one exits non-zero (or is killed) it
terminates the others (SIGTERM, SIGKILL 5 s later) and exits 1 with a traceback of its
own RuntimeError naming the first process. That is also what it does with workers that
stopped cleanly on a signal (exit 143 / 130), and a SIGTERM to horovodrun is passed on
with the same 5 s limit. So :func:`.launcher.run` supervises horovodrun as a *runner*
(:class:`HorovodRunner`): it sends a stop signal to the worker processes directly, reads
their exit codes from horovodrun's output, and ends a job whose workers all stopped on
the signal with 143 / 130 and its own line instead of horovodrun's traceback.
"""
import collections
import os
import re
import shlex
import shutil
import sys

from .launcher import LaunchError, ProcessSpec

__all__ = ['find_horovodrun', 'horovod_hosts', 'horovodrun_argv', 'plan_horovod',
           'HorovodRunner']

# horovodrun 0.28.1's output: each worker line as "[<rank>]<stdout|stderr>:<text>", and
# "Process <rank> exit with status code <code>." for a worker that exited non-zero.
_WORKER_LINE = re.compile(r'\[(\d+)\]<(?:stdout|stderr)>:(.*)', re.DOTALL)
_EXIT_REPORT = re.compile(r'Process (\d+) exit with status code (-?\d+)\.\s*$')
# horovodrun starts each worker with its rank in this variable (``env HOROVOD_RANK=...``)
_RANK_VARIABLE = 'HOROVOD_RANK'


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
    """``horovodrun --gloo -np N -H ... sh -c 'exec <command>'`` as an argv list.

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
    return argv + ['sh', '-c', 'exec ' + ' '.join(shlex.quote(word) for word in command)]


class HorovodRunner:
    """What :func:`.launcher.run` needs to know to supervise horovodrun (0.28.1) and its
    `num_workers` workers: which output lines are a worker's, the exit codes horovodrun
    reports, and which processes on this machine are the workers."""

    def __init__(self, num_workers):
        self.num_workers = num_workers

    @staticmethod
    def worker_line(line):
        """``(rank, text)`` of a worker's output line, None for horovodrun's own."""
        match = _WORKER_LINE.match(line)
        return (int(match.group(1)), match.group(2)) if match else None

    @staticmethod
    def exit_report(line):
        """``(rank, exit code)`` from horovodrun's line on a worker that exited non-zero."""
        match = _EXIT_REPORT.match(line)
        return (int(match.group(1)), int(match.group(2))) if match else None

    @staticmethod
    def local_workers(pid):
        """The worker processes below horovodrun `pid` on this machine: the topmost
        processes with a rank in their environment (their children -- data loaders --
        inherit it, horovodrun's own helpers and shells do not have it). Remote workers
        are behind ssh and not found. Needs psutil (Horovod depends on it)."""
        try:
            import psutil
        except ImportError:
            return []
        try:
            below = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            return []
        ranked = set()
        for proc in below:
            try:
                if _RANK_VARIABLE in proc.environ():
                    ranked.add(proc.pid)
            except psutil.Error:
                pass
        workers = []
        for proc in below:
            try:
                if proc.pid in ranked and proc.ppid() not in ranked:
                    workers.append(proc.pid)
            except psutil.Error:
                pass
        return workers


def plan_horovod(num_workers, command, hosts=None):
    """The job as one process, horovodrun, that :func:`.launcher.run` supervises as the
    runner of `num_workers` workers."""
    return [ProcessSpec('horovodrun', 'worker', horovodrun_argv(num_workers, command, hosts),
                        {}, 'localhost', HorovodRunner(num_workers))]
