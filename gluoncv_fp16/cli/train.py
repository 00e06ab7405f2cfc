"""Train YOLOv3 in FP32, FP16 (FP32 master weights), MXNet AMP, or FP32 then FP16.

The training command: ``gluoncv-fp16-train``, ``python -m gluoncv_fp16.cli.train`` and
``train_yolo3.py`` (GluonCV users type that; it calls :func:`main`). Accepts GluonCV's
`scripts/detection/yolo/train_yolo3.py` flags with the same meaning and defaults
(except --dataset, which defaults to the built-in synthetic set), plus this package's
(docs/options.md). The flags come from their declarations (the fields of
:class:`~gluoncv_fp16.train.config.TrainConfig`); the work is in :mod:`gluoncv_fp16.train`.

:func:`main` validates every setting in one pass before it writes anything (a mistake:
one line on stderr, exit code 2); :func:`train` checks that --save-prefix is writable,
sets up the console and ``*_train.log`` logging, and trains. The start-up checks that need the
machine run while the run is built, devices first, then data, then downloads; a run
they refuse leaves no files. SIGTERM / SIGINT stop it after the current step with a
resumable checkpoint (exit 143 / 130).
"""
import logging
import os
import sys

from ..errors import USER_ERRORS, ConfigError
from ..train.build import run_training
from ..train.config import FLAG_GROUPS, GLUONCV_FLAGS, TrainConfig
from ..train.loop import StopRequested
from .command import Command

__all__ = ['COMMAND', 'main', 'parse_args', 'make_config', 'train']


def check_writable(prefix):
    """Refuse a --save-prefix whose folder cannot be created or written, before any work."""
    folder = os.path.dirname(os.path.abspath(prefix + 'x'))
    probe = os.path.join(folder, '.gluoncv_fp16-write-test-{}'.format(os.getpid()))
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as err:
        raise ConfigError('--save-prefix {!r}: cannot write to {} ({}); choose a folder you '
                          'can write to'.format(prefix, folder, err.strerror or err)) from None


def files_before(prefix):
    """(whether the --save-prefix folder exists, the files in it) before the run."""
    folder = os.path.dirname(os.path.abspath(prefix + 'x'))
    return (True, set(os.listdir(folder))) if os.path.isdir(folder) else (False, set())


def forget_refused_run(handlers, prefix, before):
    """A run refused before it trained (bad data found at start-up) leaves nothing: its
    log, and the folder made for it, go when they are all the run wrote."""
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.close()
    folder = os.path.dirname(os.path.abspath(prefix + 'x'))
    existed, files = before
    new = set(os.listdir(folder)) - files if os.path.isdir(folder) else set()
    if any(not name.endswith('_train.log') for name in new):
        return  # it got further (checkpoints, metrics): keep everything
    for name in new:
        os.remove(os.path.join(folder, name))
    if not existed and os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)


def setup_logging(log_path):
    """Console + log file; returns the handlers so `main` can remove them again."""
    folder = os.path.dirname(os.path.abspath(log_path))
    os.makedirs(folder, exist_ok=True)
    fmt = logging.Formatter('%(asctime)s %(levelname)s %(message)s', '%H:%M:%S')
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(log_path)]
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    return handlers


def route_worker_log(handlers, prefix, then=None):
    """Rank > 0 of a distributed run: own log file, only warnings on the console.
    `then()` runs once the log is routed (the first lines that name this run)."""
    def on_workers(workers):
        if not workers.is_chief:
            for handler in handlers:
                if isinstance(handler, logging.FileHandler):
                    logging.getLogger().removeHandler(handler)
                    handler.close()
                else:
                    handler.setLevel(logging.WARNING)
            own = logging.FileHandler('{}_train.rank{}.log'.format(prefix, workers.rank))
            own.setFormatter(handlers[0].formatter)
            logging.getLogger().addHandler(own)
            handlers.append(own)
        if then is not None:
            then()
    return on_workers


def train(cfg):
    """Train with the validated settings `cfg`; returns the exit code (0, or 143 / 130:
    stopped by SIGTERM / SIGINT). A user's mistake found on the way (bad data, devices,
    downloads) is raised after the files this run wrote alone are removed."""
    handlers, before = [], None
    try:
        before = files_before(cfg.save_prefix)
        check_writable(cfg.save_prefix)
        handlers = setup_logging(cfg.run_prefix + '_train.log')
        run_training(cfg, on_workers=route_worker_log(
            handlers, cfg.run_prefix,
            lambda: logging.getLogger(__name__).info('arguments: %s', cfg.to_dict())))
    except USER_ERRORS:
        if before is not None:
            forget_refused_run(handlers, cfg.save_prefix, before)
        raise
    except StopRequested as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return 0


COMMAND = Command(
    'train', TrainConfig, FLAG_GROUPS, train, __doc__.splitlines()[0], also='train_yolo3.py',
    notes={GLUONCV_FLAGS: "Same meaning and defaults as GluonCV's "
                          "`scripts/detection/yolo/train_yolo3.py` (except `--dataset`, "
                          "which defaults to `synthetic`); each of them does something."},
    log_level=None)  # train() logs to the console and the run's log file itself


def parse_args(argv=None):
    """The parsed command line (argparse's own errors exit 2 with usage)."""
    return COMMAND.parse_args(argv)


def make_config(args):
    """Parsed namespace -> validated `TrainConfig` (raises `ConfigError`, one line)."""
    return COMMAND.make_settings(args)


def main(argv=None):
    """Run the training command; returns the exit code (0, 2: a user's mistake, 143 /
    130: stopped by SIGTERM / SIGINT)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
