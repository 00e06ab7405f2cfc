"""The checkpoint format: weights and run state on disk, never pickled.

A checkpoint is a zip archive (uncompressed) with three members:

``params.params``
    FP32 weights (the masters in FP16 phases) in MXNet's ``nd.save`` format under the
    names of ``net.save_parameters``, so GluonCV tools read them as they are.
``state.params``
    The other arrays of the run state, also ``nd.save`` format: optimizer state
    (``opt:<param>/<k>``), EMA weights (``ema:<param>``), hook arrays.
``state.json``
    Plain numbers and strings: model name and classes, the run's config, epoch,
    iteration, precision phase, loss scaler, NaN guard, optimizer counters, hooks, RNG.

Nothing in it is unpickled: MXNet's NDArray format and JSON carry data only. Checkpoints
of gluoncv_fp16 0.1 held ``trainer.states``, a pickle written by
``gluon.Trainer.save_states``; they are refused with one line (unpickling a shared file
runs whatever code it names).

Every file is written to a temporary file in the same folder, flushed to disk (fsync)
and renamed, so a run killed while saving leaves the previous file intact.

This module knows the files only; the training loop turns what
:func:`read_run_state_parts` returns into its run state.
"""
import contextlib
import json
import os
import tempfile
import zipfile

import mxnet as mx
import numpy as np

from ..errors import CheckpointError
from ..model_zoo.params import structural_params

__all__ = ['Checkpoint', 'CheckpointError', 'save_run_state', 'save_checkpoint',
           'write_checkpoint', 'read_checkpoint', 'read_params', 'read_run_state_parts',
           'save_weights', 'atomic_write', 'remove_stale_temp_files', 'STATE_VERSION_KEY',
           'EMA_PREFIX']

_PARAMS, _ARRAYS, _META, _PICKLED = 'params.params', 'state.params', 'state.json', \
    'trainer.states'
_MEMBERS = {_PARAMS, _ARRAYS, _META}


class Checkpoint:
    """What :func:`read_checkpoint` returns: weights and plain metadata only.

    Attributes
    ----------
    params : dict of str -> numpy.ndarray
        FP32 parameters by structural name.
    meta : dict
        ``state.json`` (empty for a plain ``.params`` file); ``meta['model']`` has
        ``name`` and ``classes``.
    ema : bool
        Whether `params` are the EMA weights of an ``--ema`` run (``prefer_ema``).
    """

    def __init__(self, params, meta, ema=False):
        self.params = params
        self.meta = meta
        self.ema = ema


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """A file object for `path`: written to a temp file, fsynced, renamed over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='{}{}-'.format(_TMP, os.getpid()),
                               suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared files
        os.replace(tmp, path)
        _fsync_folder(folder)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


_TMP = '.tmp-'


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temp_files(folder):
    """Remove temp files that :func:`atomic_write` left behind in processes that died
    (their names carry the writer's pid). Returns the removed paths."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if not name.startswith(_TMP):
            continue
        pid = name[len(_TMP):].split('-', 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            path = os.path.join(folder, name)
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _nd_bytes(arrays):
    """`nd.save` output as bytes (MXNet writes only to paths)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'a.params')
        mx.nd.save(path, arrays)
        with open(path, 'rb') as f:
            return f.read()


def _fp32(arrays):
    return {k: v if v.dtype == np.float32 else v.astype('float32') for k, v in arrays.items()}


def save_weights(path, weights):
    """Atomically write FP32 `weights` ({structural name: NDArray}) as a ``.params`` file
    that ``load_parameters`` of stock GluonCV reads."""
    data = _nd_bytes(_fp32(weights))
    with atomic_write(path) as f:
        f.write(data)
    return path


def write_checkpoint(path, weights, arrays, meta):
    """Atomically write a checkpoint: `weights` ({structural name: NDArray}, stored as
    FP32), the other `arrays` ({name: NDArray}) and `meta` (a JSON-serialisable dict)."""
    json_text = json.dumps(meta, indent=1, sort_keys=True)
    weights, arrays = _nd_bytes(_fp32(weights)), _nd_bytes(arrays or {})
    with atomic_write(path) as raw, zipfile.ZipFile(raw, 'w', zipfile.ZIP_STORED) as zf:
        zf.writestr(_META, json_text)
        zf.writestr(_PARAMS, weights)
        zf.writestr(_ARRAYS, arrays)
    return path


def save_run_state(path, state, meta):
    """Atomically write a run state with extra `meta` (model, config).

    `state` is any object with ``weights`` (dict), ``arrays()`` and ``disk_meta()``
    (the training loop's `RunState`); this package does not import it.
    """
    return write_checkpoint(path, state.weights, state.arrays(), dict(state.disk_meta(), **meta))


def save_checkpoint(path, net, meta):
    """A checkpoint of `net`'s weights (as FP32) and `meta` (e.g. ``{'model': {'name',
    'classes'}}``) without training state: what export, demo and eval need."""
    return write_checkpoint(path, structural_params(net), {}, meta)


def _load_nd(data, origin, member):
    try:
        loaded = mx.nd.load_frombuffer(data)
    except mx.base.MXNetError:
        raise CheckpointError("{} is damaged or truncated: its {} is not a readable MXNet "
                              "array file".format(origin, member)) from None
    if isinstance(loaded, list) and not loaded:
        return {}
    if not isinstance(loaded, dict):
        raise CheckpointError("{} holds unnamed arrays, not network parameters".format(origin))
    return {_strip_prefix(k): v for k, v in loaded.items()}


def _strip_prefix(name):
    # Module-style files prefix names with 'arg:' / 'aux:'.
    return name.split(':', 1)[1] if name.startswith(('arg:', 'aux:')) else name


def _open_members(path):
    """{member: bytes} of a checkpoint zip, checked; or None for a plain .params file."""
    origin = "'{}'".format(path)
    if not os.path.isfile(path):
        raise CheckpointError("No checkpoint at '{}'".format(path))
    if not zipfile.is_zipfile(path):
        with open(path, 'rb') as f:
            if f.read(4) == b'PK\x03\x04':  # a zip's first member, but no directory
                raise CheckpointError("{} is damaged or truncated (a zip file without its "
                                      "directory); use an earlier checkpoint".format(origin))
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if _PICKLED in names:
                raise CheckpointError(
                    "{} is a gluoncv_fp16 0.1 checkpoint whose optimizer state is a Python "
                    "pickle, which is never loaded (it can run code); if you trust the file, "
                    "convert it once: python scripts/convert_checkpoint.py {} NEW.ckpt "
                    "--trust-pickle".format(origin, path))
            if names != _MEMBERS:
                raise CheckpointError("{} is a zip file but not a gluoncv_fp16 checkpoint "
                                      "(members: {})".format(origin, sorted(names)))
            return {name: zf.read(name) for name in names}
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError("{} is damaged or truncated ({}); use an earlier checkpoint"
                              .format(origin, err)) from None


def _meta(members, origin):
    try:
        meta = json.loads(members[_META].decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError("{} is damaged: its state.json is not JSON ({})".format(
            origin, err)) from None
    if not isinstance(meta, dict):
        raise CheckpointError("{} is damaged: its state.json is not an object".format(origin))
    return meta


def read_checkpoint(path, prefer_ema=False):
    """Weights and metadata of a checkpoint, or of a plain ``.params`` file (GluonCV's,
    or ``net.save_parameters``; then ``meta`` is empty). Never reads optimizer state.

    With `prefer_ema`, the run-state checkpoint of an ``--ema`` run (its ``state.json``
    records the EMA) gives its EMA weights instead of the training weights: the weights
    that run validated, chose ``_best`` by and wrote to its ``.params`` files. Only then
    are the state's arrays read, and only the ``ema:`` ones are kept.
    """
    origin = "'{}'".format(path)
    members = _open_members(path)
    if members is None:
        with open(path, 'rb') as f:
            arrays = _load_nd(f.read(), origin, 'content')
        return Checkpoint(_to_numpy(arrays), {})
    meta = _meta(members, origin)
    if prefer_ema and STATE_VERSION_KEY in meta and meta.get('ema'):
        arrays = _load_nd(members[_ARRAYS], origin, _ARRAYS)
        ema = {k[len(EMA_PREFIX):]: v for k, v in arrays.items() if k.startswith(EMA_PREFIX)}
        if ema:
            return Checkpoint(_to_numpy(ema), meta, ema=True)
    return Checkpoint(_to_numpy(_load_nd(members[_PARAMS], origin, _PARAMS)), meta)


def _to_numpy(arrays):
    return {k: v.asnumpy().astype(np.float32) for k, v in arrays.items()}


STATE_VERSION_KEY = 'state_version'  # in state.json of checkpoints that hold a run state
EMA_PREFIX = 'ema:'  # the EMA's arrays among a run state's arrays (train/state.py writes them)


def read_run_state_parts(path):
    """(weights, arrays, meta) of a checkpoint holding a run state, arrays on the CPU.

    ``weights`` and ``arrays`` are {name: NDArray}; ``meta`` is ``state.json``. Returns
    None for a file holding weights only (a plain ``.params`` file, or one written by
    :func:`save_checkpoint`).

    Raises
    ------
    CheckpointError
        If the file is missing, damaged, or pickled.
    """
    origin = "'{}'".format(path)
    members = _open_members(path)
    if members is None:  # a plain weights file: readable, or damaged
        with open(path, 'rb') as f:
            _load_nd(f.read(), origin, 'content')
        return None
    meta = _meta(members, origin)
    if STATE_VERSION_KEY not in meta:
        return None
    return (_load_nd(members[_PARAMS], origin, _PARAMS),
            _load_nd(members[_ARRAYS], origin, _ARRAYS), meta)


def read_params(path):
    """Parameters by name (FP32 numpy) from a checkpoint or a plain ``.params`` file."""
    return read_checkpoint(path).params
