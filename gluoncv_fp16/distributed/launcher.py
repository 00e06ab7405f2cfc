"""Start a parameter-server job (scheduler, servers, workers) and watch it to the end.

This replaces ``python -m mxnet.tools.launch``, whose dmlc_tracker calls
``Thread.isAlive`` (removed in Python 3.9). The engine is MXNet's own ps-lite; a launcher
only has to start every process with the environment ps-lite reads:

``DMLC_ROLE``                 scheduler | server | worker
``DMLC_PS_ROOT_URI/PORT``     where the scheduler listens (it runs on this machine)
``DMLC_NUM_SERVER/WORKER``    how many of each will register with the scheduler
``DMLC_NODE_HOST``            the address this node announces (else ps-lite guesses one
                              from the network interfaces, which fails on loopback-only
                              machines and picks the wrong NIC on multi-homed hosts)
``PS_VERBOSE``                ps-lite logging (1 or 2), only with ``verbose``

Servers and the scheduler run the user's command too: ``import mxnet`` with
``DMLC_ROLE=server|scheduler`` turns the process into a ps-lite node that never returns
to the script, so the same interpreter and MXNet build serve the job.

Supervision is what the dmlc tracker lacks: if any worker (or server, or the
scheduler) exits non-zero, every other process is killed at once -- surviving workers
would otherwise block forever in a push/pull waiting for the dead peer -- and the
launcher exits non-zero naming the process. Each process runs in its own process group
so its children (data-loader workers) die with it.

Preemption: the first SIGTERM or Ctrl-C the launcher gets is passed on to the workers,
which stop together after their current step (the chief saves a resumable checkpoint);
the launcher waits for them and exits 143 / 130. A second signal stops everything at once.

A process may also be a *runner* that starts and watches the workers itself (horovodrun;
`ProcessSpec.runner` describes it, see :mod:`.horovod_launch`). The launcher then reads
the runner's output to tell its workers' lines from its own and to learn their exit
codes, passes a signal to the worker processes below it, and decides how the job ended:
workers that all stopped on the signal are a stop (143 / 130, one line), whatever the
runner itself makes of their exit codes.
"""
import collections
import contextlib
import ipaddress
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from ..errors import LaunchError

__all__ = ['LaunchError', 'ProcessSpec', 'read_hostfile', 'free_port', 'guess_host_ip',
           'plan_local', 'plan_ssh', 'run', 'INDEX_ENV', 'exposure_warning']

logger = logging.getLogger(__name__)

INDEX_ENV = 'GLUONCV_FP16_PROCESS_INDEX'  # index within its role, as messages name it
# Forwarded to remote hosts over ssh (locally the whole environment is inherited).
_FORWARDED = ('OMP_NUM_THREADS', 'KMP_AFFINITY', 'LD_LIBRARY_PATH', 'PYTHONPATH',
              'DMLC_INTERFACE')


ProcessSpec = collections.namedtuple('ProcessSpec', 'name role argv env host runner',
                                     defaults=(None,))
ProcessSpec.__doc__ = """One process of the job: `argv` is run locally with `env` added.

`runner` is None for a process that is one worker, server or scheduler. For a process
that starts and supervises several workers itself it describes that process's output
and workers, with ``num_workers``, ``worker_line(line) -> (rank, text) or None``,
``exit_report(line) -> (rank, code) or None`` and ``local_workers(pid) -> [pid]``
(e.g. `gluoncv_fp16.distributed.horovod_launch.HorovodRunner`)."""


def read_hostfile(path):
    """``[(host, ssh_port)]`` from a file of ``host[:port]`` lines.

    Blank lines and ``#`` comments are skipped; an MPI-style ``slots=N`` suffix is
    ignored, so one hostfile serves both launchers.
    """
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise LaunchError("cannot read hostfile '{}': {}".format(path, err.strerror)) from None
    hosts = []
    for number, line in enumerate(lines, 1):
        entry = line.split('#', 1)[0].split('slots=', 1)[0].strip()
        if not entry:
            continue
        host, _, port = entry.partition(':')
        if not host or (port and not port.isdigit()):
            raise LaunchError("hostfile '{}' line {}: expected 'host' or 'host:port', got "
                              "{!r}".format(path, number, line))
        hosts.append((host, int(port) if port else 22))
    if not hosts:
        raise LaunchError("hostfile '{}' lists no hosts".format(path))
    return hosts


def free_port(host='127.0.0.1'):
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _check_counts(num_workers, num_servers, command):
    if num_workers < 1 or num_servers < 1:
        raise LaunchError("need at least one worker and one server, got -n {} -s {}".format(
            num_workers, num_servers))
    if not command:
        raise LaunchError("no command to launch: put it after '--', e.g. "
                          "launch.py -n 2 -s 1 -- python train_yolo3.py --kvstore dist_sync")


def _job_env(root_uri, port, num_workers, num_servers, verbose):
    env = {'DMLC_PS_ROOT_URI': str(root_uri), 'DMLC_PS_ROOT_PORT': str(port),
           'DMLC_NUM_WORKER': str(num_workers), 'DMLC_NUM_SERVER': str(num_servers)}
    if verbose:
        env['PS_VERBOSE'] = str(int(verbose))
    return env


def _roles(num_workers, num_servers):
    """(role, index) of every process, scheduler first (it must listen before others dial)."""
    return [('scheduler', 0)] + [('server', i) for i in range(num_servers)] + \
        [('worker', i) for i in range(num_workers)]


def _name(role, index):
    return role if role == 'scheduler' else '{} {}'.format(role, index)


def _role_env(role, index, env):
    """`env` is {'all': {...}, 'server': {...}, 'worker': {...}} (any key optional)."""
    env = env or {}
    return dict(env.get('all', {}), **env.get(role, {}), DMLC_ROLE=role,
                **{INDEX_ENV: str(index)})


def guess_host_ip():
    """This machine's outward-facing IPv4 address (for the ssh launcher's scheduler).

    Connecting a UDP socket sends nothing; it only makes the OS choose the interface
    it would route through.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(('10.255.255.255', 1))
            address = sock.getsockname()[0]
        except OSError:
            address = '127.0.0.1'
    if address.startswith('127.'):
        raise LaunchError("could not find this machine's network address (only loopback); "
                          "pass --host-ip with an address the hosts can reach")
    return address


def plan_local(num_workers, num_servers, command, port=None, verbose=0, env=None):
    """Every process on this machine, talking over loopback (127.0.0.1).

    Parameters
    ----------
    command : list of str
        The program each process runs, e.g. ``['python', 'train_yolo3.py', ...]``.
    port : int, optional
        Scheduler port; a free one by default.
    verbose : int
        ps-lite log level (``PS_VERBOSE``), 0 for none.
    env : dict, optional
        Extra variables: ``{'all': {...}, 'server': {...}, 'worker': {...}}``.
    """
    _check_counts(num_workers, num_servers, command)
    port = port or free_port()
    common = dict(_job_env('127.0.0.1', port, num_workers, num_servers, verbose),
                  DMLC_NODE_HOST='127.0.0.1')
    return [ProcessSpec(_name(role, i), role, list(command),
                        dict(common, **_role_env(role, i, env)), '127.0.0.1')
            for role, i in _roles(num_workers, num_servers)]


def plan_ssh(num_workers, num_servers, command, hosts, root_uri, port, workdir=None,
             verbose=0, env=None, forward=()):
    """The scheduler here, servers and workers on `hosts` (round robin) over ssh.

    Each remote process is ``ssh -tt``: killing the local ssh client hangs up the remote
    terminal, so the remote process dies with it. ``BatchMode`` makes a host that would
    ask for a password fail at once instead of waiting for input.

    Parameters
    ----------
    hosts : list of (str, int)
        From :func:`read_hostfile`.
    root_uri : str
        This machine's address as the hosts can reach it (the scheduler runs here).
    workdir : str, optional
        Remote working directory (default: this one; the code must be there already).
    verbose, env
        As :func:`plan_local`.
    forward : iterable of str
        Names of local environment variables to pass on, besides MXNET_*, OMP_NUM_THREADS,
        KMP_AFFINITY, LD_LIBRARY_PATH, PYTHONPATH and DMLC_INTERFACE.
    """
    _check_counts(num_workers, num_servers, command)
    if not hosts:
        raise LaunchError("the ssh launcher needs hosts (-H hostfile)")
    warning = exposure_warning(root_uri)
    if warning:
        logger.warning('%s', warning)
    job = _job_env(root_uri, port, num_workers, num_servers, verbose)
    passed = _forwarded_env(forward)
    workdir = workdir or os.getcwd()
    specs = []
    for role, i in _roles(num_workers, num_servers):
        role_env = dict(job, **_role_env(role, i, env))
        if role == 'scheduler':
            specs.append(ProcessSpec('scheduler', role, list(command), role_env, 'localhost'))
            continue
        host, ssh_port = hosts[i % len(hosts)]
        remote_env = dict(passed, DMLC_NODE_HOST=host, **role_env)
        specs.append(ProcessSpec(_name(role, i), role,
                                 _ssh_argv(host, ssh_port, workdir, remote_env, command),
                                 {}, host))
    return specs


def exposure_warning(address):
    """One line when the scheduler address is reachable beyond a private network, else None.

    ps-lite (and Gloo) have no authentication: whoever reaches the scheduler's port can join
    or disrupt the job (docs/distributed.md, "Trust model").
    """
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(str(address)))
    except (OSError, ValueError):
        return None  # unresolvable here; the job itself will say so
    if ip.is_private or ip.is_loopback or ip.is_link_local:
        return None
    return ('the scheduler address {} ({}) is not a private, loopback or link-local '
            'address: MXNet\'s parameter server has no authentication, so anyone who can '
            'reach it can join or disrupt this job; use a private interface '
            '(--host-ip / DMLC_INTERFACE) or firewall the port (docs/distributed.md)'.format(
                address, ip))


def _forwarded_env(names):
    wanted = set(_FORWARDED) | set(names)
    return {k: v for k, v in os.environ.items() if k in wanted or k.startswith('MXNET_')}


def _ssh_argv(host, port, workdir, env, command):
    """The ssh command line of one remote process.

    Its environment travels on the remote command line, so it is visible in ``ps`` on the
    remote host: the DMLC_* job variables (scheduler address and port, counts, role),
    the forwarded ones (MXNET_*, OMP/KMP, LD_LIBRARY_PATH, PYTHONPATH, DMLC_INTERFACE and
    --forward names) -- never put a secret in them. Unknown host keys are accepted once
    and then pinned (``accept-new``): a changed key stops the job instead of being trusted.
    """
    exports = ' '.join('{}={}'.format(k, shlex.quote(v)) for k, v in sorted(env.items()))
    remote = 'cd {} && exec env {} {}'.format(
        shlex.quote(workdir), exports, ' '.join(shlex.quote(c) for c in command))
    return ['ssh', '-tt', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=accept-new',
            '-p', str(port), host, remote]


class _Process:
    """A started ProcessSpec whose output is copied, line by line and prefixed, to `out`.

    For a runner (``spec.runner``), its workers' lines are copied as ``[worker R] ...``;
    its own lines are held back once the job is stopping (a signal was passed on, or a
    worker reported a stop code) and shown only if the runner's exit then turns out to be
    a failure, so that a clean stop is not reported as the runner's error.
    """

    def __init__(self, spec, out):
        self.spec = spec
        self._out = out
        self._lock = threading.RLock()  # also taken by the signal handler (`relay`)
        self._stopping = False
        self._held = []        # the runner's own lines while the job is stopping
        self._reported = {}    # rank -> exit code, as the runner reported them
        self._code = None      # the exit code as the launcher judges it (runners)
        self.popen = subprocess.Popen(
            spec.argv, env=dict(os.environ, **spec.env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._pump = threading.Thread(target=self._copy, daemon=True)
        self._pump.start()

    @property
    def num_workers(self):
        """How many workers a worker process stands for: its runner's count, else 1."""
        return 1 if self.spec.runner is None else self.spec.runner.num_workers

    def _write(self, text):
        stream = self._out() if callable(self._out) else self._out
        stream.write(text)
        stream.flush()

    def _copy(self):
        prefix = '[{}] '.format(self.spec.name)
        runner = self.spec.runner
        for raw in iter(self.popen.stdout.readline, b''):
            line = raw.decode('utf-8', 'replace')
            worker = runner.worker_line(line) if runner is not None else None
            if worker is not None:
                self._write('[worker {}] {}'.format(*worker))
            elif runner is not None:
                self._runner_line(line, prefix)
            else:
                self._write(prefix + line)
        self.popen.stdout.close()

    def _runner_line(self, line, prefix):
        report = self.spec.runner.exit_report(line)
        with self._lock:
            if report is not None:
                self._reported[report[0]] = report[1]
                self._stopping = self._stopping or report[1] in STOP_CODES
            if self._stopping:
                self._held.append(prefix + line)
                return
        self._write(prefix + line)

    def describe(self):
        return '{} (pid {}, host {})'.format(self.spec.name, self.popen.pid, self.spec.host)

    def signal(self, sig):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def relay(self, sig):
        """Pass a stop signal on to this process's workers. A runner's workers run in
        sessions of their own: they get it directly (the runner is left alone, so that it
        does not stop them itself); if none runs on this machine, the runner gets it."""
        if self.spec.runner is None:
            self.signal(sig)
            return
        with self._lock:
            self._stopping = True
        pids = self.spec.runner.local_workers(self.popen.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if not pids:
            logger.warning('launch: no worker of %s runs on this machine; %s passed on to it',
                           self.spec.name, signal.Signals(sig).name)
            self.signal(sig)

    def poll(self):
        """The exit code, or None while running. A runner whose workers all ended with a
        stop code (or 0) counts as stopped by that signal (128 + signal), whatever code it
        gave itself; any other exit of a runner shows its held-back lines."""
        code = self.popen.poll()
        if code is None or self.spec.runner is None:
            return code
        if self._code is None:
            self.finish_output()  # every exit report read
            with self._lock:
                codes = list(self._reported.values())
                stops = [c for c in codes if c in STOP_CODES]
                held, self._held = self._held, []
                self._stopping = False  # from now on nothing is held
            if code != 0 and stops and all(c in STOP_CODES or c == 0 for c in codes):
                self._code = stops[0]
                for line in held:
                    logger.debug('%s', line.rstrip('\n'))
            else:
                self._code = code
                for line in held:
                    self._write(line)
        return self._code

    def finish_output(self, timeout=2.0):
        self._pump.join(timeout)


def _exit_text(code):
    return 'was killed by signal {}'.format(-code) if code < 0 else \
        'exited with code {}'.format(code)


def _descendants(pids):
    """Every live process below `pids`, across sessions: horovodrun starts each worker in
    a session of its own, out of reach of its process group. Needs psutil (Horovod brings
    it); without it, an empty list."""
    try:
        import psutil
    except ImportError:
        return []
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found.extend(psutil.Process(pid).children(recursive=True))
    return found


def _kill_all(processes):
    for proc in processes:
        # psutil.NoSuchProcess/AccessDenied: gone, or not ours
        with contextlib.suppress(Exception):
            proc.kill()


def _stop_all(procs, grace):
    """SIGTERM every live process group, SIGKILL what is left after `grace` seconds, and
    at last every process that was started below them in other sessions."""
    live = [p for p in procs if p.popen.poll() is None]
    below = _descendants([p.popen.pid for p in live])
    for p in live:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in live:
        try:
            p.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.signal(signal.SIGKILL)
            p.popen.wait()
    for p in procs:
        p.signal(signal.SIGKILL)  # stragglers left in a group whose leader already exited
    _kill_all(below)
    for p in procs:
        p.finish_output()


# A worker that exits with one of these stopped cleanly on that signal (training saves a
# resumable checkpoint first; see gluoncv_fp16.train.stopping)
STOP_CODES = {128 + signal.SIGTERM: 'SIGTERM', 128 + signal.SIGINT: 'SIGINT'}


class _StopRelay:
    """The launcher's SIGTERM/SIGINT handler while a job runs.

    The first signal is passed on to every worker's process group (a runner's workers:
    to each worker process, see `_Process.relay`): training workers vote on it at their
    next step, all stop after that step, and the chief saves. The launcher then waits for
    them. A second signal stops every process at once (KeyboardInterrupt,
    which `run` turns into SIGTERM, then SIGKILL after the grace time).
    """

    def __init__(self, procs):
        self.procs, self.name = procs, None

    def __call__(self, signum, frame):  # pylint: disable=unused-argument
        if self.name is not None:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name
        logger.warning('launch: %s received: passed on to the workers, which stop after '
                       'their current step (send it again to stop at once)', self.name)
        for p in self.procs:
            if p.spec.role == 'worker':
                p.relay(signum)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)


def _watch(procs, poll, shutdown_timeout, timeout, relay=None):
    """Block until the job ends; return (exit code, message).

    A worker that exits with a `STOP_CODES` code (or every worker, after the launcher
    passed a signal on) means the job is stopping: the others get `shutdown_timeout`
    seconds to stop at the same step before they are stopped.
    """
    workers = [p for p in procs if p.spec.role == 'worker']
    count = sum(p.num_workers for p in workers)
    started, done_at, stopped_at = time.monotonic(), None, None
    while True:
        if timeout is not None and time.monotonic() - started > timeout:
            return 124, 'the job ran longer than its timeout ({:g} s); stopping it'.format(timeout)
        codes = [p.poll() for p in workers]
        stopped = next((STOP_CODES[c] for c in codes if c in STOP_CODES), None)
        relayed = relay.name if relay is not None else None
        if stopped or relayed:
            name = stopped or relayed
            stopped_at = stopped_at or time.monotonic()
            if all(c in STOP_CODES or c == 0 for c in codes):  # all exited, none failed
                return 128 + getattr(signal, name), \
                    'the {} workers stopped after {} (a training job continues with ' \
                    '--resume auto)'.format(count, name)
            if not relayed and time.monotonic() - stopped_at > shutdown_timeout:
                return 128 + getattr(signal, name), 'a worker stopped after {} but the ' \
                    'others did not within {:g} s; stopping them'.format(name, shutdown_timeout)
        for p in procs:
            code = p.poll()
            if code not in (None, 0) and not (p in workers and code in STOP_CODES):
                return (code if code > 0 else 128 - code), \
                    '{} {}; stopping the other processes'.format(p.describe(), _exit_text(code))
        if not stopped_at and all(c == 0 for c in codes):
            if all(p.poll() is not None for p in procs):
                return 0, 'all {} workers finished'.format(count)
            done_at = done_at or time.monotonic()
            if time.monotonic() - done_at > shutdown_timeout:
                return 0, 'all workers finished; servers/scheduler did not exit within ' \
                          '{:g} s and were stopped'.format(shutdown_timeout)
        time.sleep(poll)


def run(specs, out=None, poll=0.1, grace=5.0, shutdown_timeout=30.0, timeout=None):
    """Start `specs` in order, supervise them, and always leave no process behind.

    Parameters
    ----------
    specs : list of ProcessSpec
        From :func:`plan_local` or :func:`plan_ssh`.
    out : file or callable, optional
        Where prefixed process output goes (default: the current ``sys.stdout``).
    poll : float
        Seconds between checks of the processes.
    grace : float
        Seconds a process gets to exit after SIGTERM before SIGKILL.
    shutdown_timeout : float
        Seconds servers and scheduler may take to exit after the last worker.
    timeout : float, optional
        Stop the whole job after this many seconds (exit code 124).

    Returns
    -------
    int
        0 on success; 143 / 130 when the workers stopped after SIGTERM / SIGINT (passed
        on by the launcher, or received by a worker); otherwise the failing process's exit
        code (128+signal for a signal), 124 after `timeout`, or 130 when a second signal
        stopped everything at once.
    """
    out = out or (lambda: sys.stdout)
    procs = []
    try:
        with _StopRelay(procs).installed() as relay:
            for spec in specs:
                logger.info('starting %s: %s', spec.name, ' '.join(spec.argv))
                procs.append(_Process(spec, out))
            code, message = _watch(procs, poll, shutdown_timeout, timeout, relay)
        (logger.info if code == 0 else logger.error)('launch: %s', message)
        return code
    except KeyboardInterrupt:
        logger.error('launch: interrupted; stopping all %d processes', len(procs))
        return 130
    except OSError as err:
        raise LaunchError('cannot start {!r}: {}'.format(spec.argv[0], err.strerror)) from None
    finally:
        _stop_all(procs, grace)
