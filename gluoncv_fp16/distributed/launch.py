"""Launch a distributed MXNet job: dist_sync (scheduler, servers, workers) or Horovod.

    # 2 workers + 1 server on this machine
    python scripts/launch.py -n 2 -s 1 -- python train_yolo3.py --kvstore dist_sync ...
    # 4 machines listed in hosts.txt (host[:ssh_port] per line), one worker + server each
    python scripts/launch.py -n 4 -s 4 -H hosts.txt -- python train_yolo3.py --kvstore dist_sync
    # Horovod: 2 processes here, or 8 over the hosts in hosts.txt (horovodrun over ssh)
    python scripts/launch.py --horovod -n 2 -- python train_yolo3.py --horovod ...
    python scripts/launch.py --horovod -n 8 -H hosts.txt -- python train_yolo3.py --horovod ...

Same options as `python -m mxnet.tools.launch` (broken on Python >= 3.9), minus the
mpi/sge/yarn launchers and --sync-dst-dir (copy the code to the hosts yourself). If a
worker fails, the others are stopped and the exit status is non-zero. The first SIGTERM
or Ctrl-C is passed on to the workers, which stop after their current step (training
saves a resumable checkpoint); the exit status is then 143 / 130. A second one stops all.
`--horovod` runs `horovodrun --gloo -np N -H ... sh -c 'exec <command>'`: the `sh -c`
keeps horovodrun from reading the command's options (`--network`) as its own.
"""
import argparse
import logging
import signal
import sys

from .horovod_launch import plan_horovod
from .launcher import (LaunchError, guess_host_ip, plan_local, plan_ssh,
                                          read_hostfile, run)

# dist_sync-only options: (attribute, flag, value when not given)
_PS_ONLY = (('num_servers', '-s', None), ('launcher', '--launcher', None),
            ('port', '--port', None), ('host_ip', '--host-ip', None),
            ('workdir', '--workdir', None), ('verbose', '--verbose', 0),
            ('env_server', '--env-server', []))


def _pair(text):
    name, sep, value = text.partition(':')
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME:VALUE, got {!r}".format(text))
    return name, value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        usage='%(prog)s [--horovod] -n WORKERS [-s SERVERS] [options] -- command ...')
    parser.add_argument('--horovod', action='store_true',
                        help='start the workers with horovodrun (Gloo) instead of a '
                        'parameter-server job; -H hosts then run them over ssh')
    parser.add_argument('-n', '--num-workers', type=int, required=True,
                        help='number of worker processes')
    parser.add_argument('-s', '--num-servers', type=int,
                        help='number of server processes (default: as many as workers)')
    parser.add_argument('--launcher', choices=('local', 'ssh'),
                        help="'local' (default without -H) or 'ssh' (default with -H)")
    parser.add_argument('-H', '--hostfile', help='hosts for ssh, one host[:port] per line')
    parser.add_argument('--port', type=int, help='scheduler port (default: a free one)')
    parser.add_argument('--host-ip', help="ssh: this machine's address as the hosts see it "
                        "(default: detected)")
    parser.add_argument('--workdir', help='ssh: working directory on the hosts '
                        '(default: the current one)')
    parser.add_argument('--env', action='append', default=[], metavar='NAME[:VALUE]',
                        help='for all processes: NAME:VALUE sets it, NAME forwards the local '
                        'value over ssh (locally everything is inherited anyway)')
    parser.add_argument('--env-server', action='append', default=[], type=_pair,
                        metavar='NAME:VALUE', help='for servers only')
    parser.add_argument('--env-worker', action='append', default=[], type=_pair,
                        metavar='NAME:VALUE', help='for workers only')
    parser.add_argument('--timeout', type=float,
                        help='stop the whole job after this many seconds (exit status 124)')
    parser.add_argument('--verbose', type=int, default=0, choices=(0, 1, 2),
                        help='ps-lite logging (PS_VERBOSE)')
    parser.add_argument('command', nargs=argparse.REMAINDER,
                        help="the program, after '--'")
    args = parser.parse_args(argv)
    if args.command[:1] == ['--']:
        args.command = args.command[1:]
    if args.horovod:
        given = [flag for name, flag, unset in _PS_ONLY if getattr(args, name) != unset]
        if given:
            parser.error('{} only appl{} to dist_sync jobs, not --horovod'.format(
                ', '.join(given), 'ies' if len(given) == 1 else 'y'))
        return args
    if args.num_servers is None:
        args.num_servers = args.num_workers
    if args.launcher is None:
        args.launcher = 'ssh' if args.hostfile else 'local'
    return args


def make_plan(args):
    set_all = dict(_pair(e) for e in args.env if ':' in e)
    env = {'all': set_all, 'server': dict(args.env_server), 'worker': dict(args.env_worker)}
    if args.horovod:  # horovodrun passes its environment on to the workers
        hosts = read_hostfile(args.hostfile) if args.hostfile else None
        return [spec._replace(env=dict(set_all, **env['worker']))
                for spec in plan_horovod(args.num_workers, args.command, hosts)]
    if args.launcher == 'local':
        return plan_local(args.num_workers, args.num_servers, args.command, port=args.port,
                          verbose=args.verbose, env=env)
    if not args.hostfile:
        raise LaunchError("--launcher ssh needs -H hostfile")
    host_ip = args.host_ip or guess_host_ip()
    return plan_ssh(args.num_workers, args.num_servers, args.command,
                    read_hostfile(args.hostfile), host_ip, args.port or 9091,
                    workdir=args.workdir, verbose=args.verbose, env=env,
                    forward=[e for e in args.env if ':' not in e])


def _terminate(signum, frame):
    raise KeyboardInterrupt  # run() stops every process on its way out


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(make_plan(args), timeout=args.timeout)
    except LaunchError as err:
        print('launch.py: error: {}'.format(err), file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
