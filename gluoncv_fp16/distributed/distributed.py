"""What a worker of a distributed job needs to know and do: its rank, failing fast, Horovod.

Two ways to train on several machines, as in GluonCV:

* MXNet's parameter server (``--kvstore dist_sync``), processes started by
  :mod:`gluoncv_fp16.distributed.launcher` (``scripts/launch.py``);
* Horovod (``--horovod``), processes started by ``horovodrun``/``mpirun``.

Why :func:`fail_fast` exists: once a worker has created a dist kvstore, ps-lite's
shutdown (run at interpreter exit) waits on a barrier with every other node. A worker
whose training raises therefore does not exit -- it waits for peers that are themselves
blocked in a push/pull waiting for it -- and the job hangs with nothing in the logs
(measured with MXNet 1.9.1: ``sys.exit(3)`` after ``mx.kv.create('dist_sync')`` never
returns). Inside ``fail_fast()`` an error is logged and the process leaves with
``os._exit``, skipping that barrier; the launcher sees the exit code, names the worker
and stops the rest. MXNet 1.9's push/pull have no timeout, so a worker cannot notice a
dead peer itself: the launcher is what ends the job.
"""
import contextlib
import logging
import os
import sys
import traceback

__all__ = ['HorovodUnavailable', 'worker_info', 'is_distributed',
           'require_launcher', 'fail_fast', 'init_horovod', 'horovod_trainer',
           'prepare_dist_params']

logger = logging.getLogger(__name__)

_PS_VARIABLES = ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_SERVER',
                 'DMLC_NUM_WORKER')


class HorovodUnavailable(ImportError):
    """``--horovod`` was asked for but ``horovod.mxnet`` cannot be imported."""


def is_distributed(kvstore):
    """True for a multi-machine kvstore: a ``'dist_*'`` name or a created dist KVStore."""
    kind = kvstore if isinstance(kvstore, str) else getattr(kvstore, 'type', '')
    return bool(kind) and kind.startswith('dist')


def worker_info(kvstore=None):
    """``(rank, num_workers)`` of this process.

    Parameters
    ----------
    kvstore : mxnet.kvstore.KVStore, str or None
        A created kvstore (its rank as ps-lite assigned it), or a non-dist name / None
        for a single-process run, which is ``(0, 1)``.

    Raises
    ------
    ValueError
        A dist kvstore *name*: the rank exists only once the kvstore is created.
    """
    if kvstore is None or isinstance(kvstore, str):
        if is_distributed(kvstore):
            raise ValueError("worker_info({!r}): the rank of a dist kvstore is known only "
                             "after mx.kv.create({!r}); pass the created kvstore".format(
                                 kvstore, kvstore))
        return 0, 1
    return int(kvstore.rank), int(kvstore.num_workers)


def require_launcher(kvstore):
    """Raise a clear error when a dist kvstore is asked for outside a launched job.

    Without the DMLC_* variables ``mx.kv.create('dist_sync')`` fails deep in ps-lite
    ("Check notnull: Environment::Get()->find("DMLC_NUM_WORKER")").
    """
    if not is_distributed(kvstore):
        return
    missing = [name for name in _PS_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(
            "--kvstore {} needs processes started by the launcher ({} not set). Run e.g. "
            "python scripts/launch.py -n 2 -s 1 -- python train_yolo3.py --kvstore {} ..."
            .format(kvstore, ', '.join(missing), kvstore))


@contextlib.contextmanager
def fail_fast(exit_code=1, user_errors=()):
    """Turn an exception in a distributed worker into a prompt, logged process exit.

    Use around everything after the dist kvstore is created::

        with fail_fast():
            train()

    An exception (or ``sys.exit`` with a non-zero code) is logged with its traceback,
    output is flushed, and the process exits with ``os._exit`` -- see the module doc for
    why a normal exit would hang. An exception with an integer ``exit_code`` is a planned
    stop (`StopRequested` after SIGTERM/SIGINT): its text is the one line printed and the
    process exits with that code. An instance of `user_errors` (a setting or input the
    user must fix) is one line too, ``error: <text>``, and exit code 2, as a
    single-process run reports it. A clean exit passes through untouched.
    """
    try:
        yield
    except SystemExit as err:
        if err.code in (None, 0):
            raise
        _die('exiting with {!r}'.format(err.code),
             err.code if isinstance(err.code, int) else exit_code)
    except BaseException as err:  # KeyboardInterrupt too: peers must not wait for us
        code = getattr(err, 'exit_code', None)
        if isinstance(code, int):
            print(err, file=sys.stderr)
            _exit_now(code)
        if user_errors and isinstance(err, user_errors):
            print('error: {}'.format(err), file=sys.stderr)
            _exit_now(2)
        logger.error('worker failed:\n%s', ''.join(traceback.format_exception(
            type(err), err, err.__traceback__)).rstrip())
        _die('{}: {}'.format(type(err).__name__, err), exit_code)


def _die(reason, code):
    logger.error('leaving without the ps-lite shutdown barrier (%s); the launcher stops '
                 'the other processes', reason)
    _exit_now(code)


def _exit_now(code):
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os._exit(code)


def init_horovod():
    """Initialise Horovod; return ``(hvd, rank, size, local_rank)``.

    Raises
    ------
    HorovodUnavailable
        ``horovod.mxnet`` cannot be imported (not installed, or built without MXNet).
    """
    try:
        import horovod.mxnet as hvd
    except ImportError as err:
        raise HorovodUnavailable(
            "Horovod is not installed: build it against this environment's MXNet with "
            "bash scripts/install_horovod.sh (docs/distributed.md), or train without "
            "--horovod (e.g. --kvstore dist_sync with scripts/launch.py). Import error: "
            "{}".format(err)) from err
    hvd.init()
    return hvd, hvd.rank(), hvd.size(), hvd.local_rank()


def prepare_dist_params(params):
    """Give every parameter fresh arrays in MXNet's plain memory layout before rank 0's
    values are sent to the other workers (a Trainer on a dist kvstore, Horovod's broadcast).

    Why, for a dist kvstore (measured with MXNet 1.9.1, oneDNN CPU build, 2 workers + 1
    server on loopback, 3 runs out of 3): an inference-mode forward -- the shape forward
    at build time, or a validation pass -- lets oneDNN convolutions re-lay out their
    weights in place. The Trainer initialises each key with ``kvstore.broadcast``; on a
    dist kvstore rank 0 pushes the value from its raw buffer, which fails inside the
    engine for such an array ("We can't generate TBlob for MKLDNN data"). The failure is
    recorded on the array instead of raised, so rank 0 goes through the per-key init
    barrier without having initialised the key; another worker's pull then reaches the
    server first and it aborts with "init <key> first". `reset_ctx` re-creates the arrays
    (values unchanged) in the plain layout, which the push can read.

    Horovod: without this, 2 workers over Gloo (horovod 0.28.1, mobilenet0.25 after the
    shape forward) aborted at the first step with "op.preamble.length <= op.nbytes. 2048
    vs 512", most likely rank 0 sending a padded blocked-layout buffer; with it they train.

    Parameters
    ----------
    params : gluon.ParameterDict
        Initialised parameters, all on the same contexts.
    """
    for param in params.values():
        param.reset_ctx(param.list_ctx())


def horovod_trainer(params, optimizer, optimizer_params, hvd=None):
    """A ``hvd.DistributedTrainer`` over `params`, after broadcasting rank 0's weights.

    Every worker must start from the same weights; Horovod only averages gradients.
    Pass `optimizer_params` unscaled: Horovod divides gradients by its size itself.
    """
    if hvd is None:
        hvd = init_horovod()[0]
    prepare_dist_params(params)
    hvd.broadcast_parameters(params, root_rank=0)
    return hvd.DistributedTrainer(params, optimizer, optimizer_params)
