"""Every private MXNet, Gluon and GluonCV attribute the package reads or writes.

The package is built against MXNet 1.9.x (Gluon 1.x) and GluonCV 0.10.5. Where those
libraries keep something the package needs only in a private attribute, the access is a
small function here that says why the private route is needed and which public route was
checked and found wanting. Nothing else in the package touches a private name of another
library (tests/test_mxnet_compat.py scans the source), so porting to another MXNet means
reading this one file.

Importing the module checks ``mxnet.__version__``: 1.9.x is tested and silent; another
1.x release is untested and warns (:class:`UntestedMXNetWarning`); any other major
version raises ImportError, because Gluon 2 dropped ``hybrid_forward`` and the Trainer
internals below. An accessor whose attribute is missing raises RuntimeError naming the
attribute and the tested version, instead of a bare AttributeError (the AMP ones and
:func:`trainer_grad_multiplier` answer "none" instead: their attributes exist only once
AMP or a Trainer is set up).
"""
import collections
import warnings

import mxnet as mx
from mxnet.gluon import nn

__all__ = ['TESTED_MXNET', 'UntestedMXNetWarning', 'check_mxnet_version',
           'params_by_structural_name', 'trainer_params', 'trainer_updaters',
           'trainer_grad_multiplier', 'update_counts', 'set_update_counts',
           'amp_loss_scale', 'amp_scaler_fields', 'set_amp_scaler_fields',
           'clear_cached_graph', 'label_smoothing', 'set_label_smoothing',
           'use_running_statistics']

TESTED_MXNET = '1.9'  # major.minor of the MXNet releases the package is tested with


class UntestedMXNetWarning(RuntimeWarning):
    """MXNet is a 1.x release other than the tested one; the private routes may differ."""


def check_mxnet_version(version):
    """Raise or warn, in one line, when `version` is not the tested MXNet.

    Parameters
    ----------
    version : str
        An ``mxnet.__version__`` such as ``'1.9.1'`` or ``'2.0.0b1'``.

    Raises
    ------
    ImportError
        For a major version other than 1 (Gluon 2 has no ``hybrid_forward(F, ...)``,
        which every block of this package overrides, and no 1.x Trainer internals).
    """
    parts = str(version).split('.')
    major, minor = parts[0], parts[1] if len(parts) > 1 else ''
    if major != '1':
        raise ImportError(
            'gluoncv_fp16 needs MXNet {}.x (tested); MXNet {} is unsupported: its Gluon has no '
            'hybrid_forward and no 1.x Trainer internals; install mxnet==1.9.1'.format(
                TESTED_MXNET, version))
    if '{}.{}'.format(major, minor) != TESTED_MXNET:
        warnings.warn('MXNet {} is untested with gluoncv_fp16 (tested: {}.x): optimizer-state '
                      'checkpoints and AMP resume read private Trainer attributes that may '
                      'differ'.format(version, TESTED_MXNET), UntestedMXNetWarning, stacklevel=2)


check_mxnet_version(mx.__version__)


def _private(obj, name):
    """``getattr(obj, name)`` that names the missing attribute and the tested MXNet."""
    try:
        return getattr(obj, name)
    except AttributeError:
        raise RuntimeError('{} has no {} in MXNet {}: gluoncv_fp16 reads it there and is tested '
                           'with MXNet {}.x'.format(type(obj).__name__, name, mx.__version__,
                                                    TESTED_MXNET)) from None


# --- Gluon blocks ----------------------------------------------------------------------

def params_by_structural_name(block):
    """{structural name: Parameter} of `block`, e.g. ``'features.0.weight'``, in order.

    These are the names ``save_parameters`` writes and checkpoints key on: they depend on
    the network's structure only, not on how many blocks the process built before. Why
    private: ``collect_params()`` keys on the prefixed global names
    (``'hybridsequential0_conv0_weight'``), which differ (tested), and the only public
    route to the structural names, ``save_parameters`` plus ``nd.load``, copies every
    array through a file and returns no Parameter objects.
    """
    return collections.OrderedDict(_private(block, '_collect_params_with_prefix')())


def clear_cached_graph(block):
    """Drop `block`'s cached graph so the next call traces its Python code again.

    Needed after changing a constant the graph baked in (label smoothing). Why private:
    the public ``hybridize()`` clears it too, but also resets the flags the caller chose
    (``static_alloc``, ``static_shape``) to their defaults.
    """
    _private(block, '_clear_cached_op')()


# --- gluon.Trainer and its optimizer ---------------------------------------------------

def trainer_params(trainer):
    """The Trainer's Parameters in its own index order (the updater states' keys).

    Why private: the Trainer keeps the list it was given in ``_params`` and indexes
    optimizer states by position in it; there is no public getter, and rebuilding the
    order from ``collect_params()`` would depend on how the caller passed them.
    """
    return list(_private(trainer, '_params'))


def trainer_updaters(trainer):
    """The Trainer's per-device updaters, whose ``states`` hold the optimizer state.

    Why private: the only public routes, ``save_states``/``load_states``, pickle the
    states and the optimizer object (unpickling runs code, and it forces every array to
    the host); the package stores the states as named arrays instead.
    """
    return list(_private(trainer, '_updaters'))


def trainer_grad_multiplier(trainer):
    """The Trainer's own gradient multiplier before the batch-size division.

    The optimizer's ``rescale_grad`` the Trainer was built with; Horovod's and AMP's
    trainers change it. Why private: the Trainer keeps it as ``_scale`` and overwrites
    the public ``trainer.optimizer.rescale_grad`` with ``_scale / batch_size`` at every
    step, so the public value depends on the last step's batch size. 1.0 for an object
    without it (no Trainer yet: nothing rescales).
    """
    return float(getattr(trainer, '_scale', 1.0))


def update_counts(optimizer):
    """``{device id: {parameter index: updates}}``: the per-parameter update counts that
    drive the learning-rate schedule (``optimizer.num_update`` is their maximum).

    Why private: ``Optimizer`` exposes ``num_update`` but keeps the per-parameter counts,
    which a resumed run needs to continue its schedule exactly, only in
    ``_all_index_update_counts``.
    """
    return _private(optimizer, '_all_index_update_counts')


def set_update_counts(optimizer, counts):
    """Install `counts` (as :func:`update_counts` returns them) on `optimizer`.

    The optimizer also keeps ``_index_update_count``, an alias of device 0's counts: it
    is re-pointed here so both stay one object, as the optimizer's own code expects.
    """
    _private(optimizer, '_all_index_update_counts')  # a clear error on another MXNet
    counts = dict(counts) or {0: {}}
    counts.setdefault(0, {})
    optimizer._all_index_update_counts = counts
    optimizer._index_update_count = counts[0]


# --- MXNet AMP -------------------------------------------------------------------------

_AMP_FIELDS = ('_loss_scale', '_next_loss_scale', '_unskipped')


def _amp_scaler(trainer):
    """The dynamic loss scaler ``amp.init_trainer`` attached to `trainer`, or None.

    Why private: AMP stores it as ``trainer._amp_loss_scaler`` and offers no getter.
    """
    return getattr(trainer, '_amp_loss_scaler', None) if trainer is not None else None


def amp_loss_scale(trainer):
    """AMP's current loss scale for `trainer` (None before ``amp.init_trainer``)."""
    scaler = _amp_scaler(trainer)
    return float(scaler.loss_scale) if scaler is not None else None


def amp_scaler_fields(trainer):
    """AMP's scaler state of `trainer` as plain numbers, or None without a scaler.

    Why private: a resumed ``--amp`` run must continue with the scale it had, not AMP's
    initial 2^16; the scale, the next scale and the count of unskipped steps exist only
    as private fields of AMP's ``LossScaler`` (its public ``loss_scale`` is read-only).
    """
    scaler = _amp_scaler(trainer)
    if scaler is None:
        return None
    return {name: _private(scaler, name) for name in _AMP_FIELDS}


def set_amp_scaler_fields(trainer, fields):
    """Restore :func:`amp_scaler_fields`; False (nothing set) without a scaler yet."""
    scaler = _amp_scaler(trainer)
    if scaler is None:
        return False
    for name in _AMP_FIELDS:
        setattr(scaler, name, type(_private(scaler, name))(fields[name]))
    return True


# --- GluonCV 0.10.5 --------------------------------------------------------------------

def label_smoothing(net):
    """Whether GluonCV's YOLOv3 `net` smooths its class targets."""
    return bool(_private(_private(net, '_target_generator'), '_label_smooth'))


def set_label_smoothing(net, enabled):
    """Turn label smoothing of GluonCV's YOLOv3 `net` on or off after construction.

    Why private: GluonCV takes ``label_smooth`` only as a constructor argument of
    ``YOLOV3`` and keeps it as ``_target_generator._label_smooth``; ``reset_class``
    builds a new target generator without it. The cached graph baked the old value in,
    so it is cleared.
    """
    generator = _private(net, '_target_generator')
    _private(generator, '_label_smooth')
    generator._label_smooth = bool(enabled)
    clear_cached_graph(net)


def use_running_statistics(batchnorm):
    """Make a Gluon BatchNorm layer (or a subclass: SyncBatchNorm, the half-safe ones)
    normalise with its running statistics in training too, and stop updating them: the
    behaviour of ``BatchNorm(use_global_stats=True)``.

    Why private: Gluon 1.x takes `use_global_stats` only as a constructor argument and
    keeps it in the layer's operator keyword arguments (``_BatchNorm._kwargs``), which
    `hybrid_forward` passes to the BatchNorm operator; there is no setter, and rebuilding
    the layer would change its parameter names. A hybridized network picks the change up
    the next time its graph is built (``hybridize()`` or ``cast()`` clear the cached one).

    Parameters
    ----------
    batchnorm : mxnet.gluon.nn.BatchNorm

    Raises
    ------
    TypeError
        `batchnorm` is not a Gluon BatchNorm.
    RuntimeError
        This MXNet keeps no ``use_global_stats`` in the layer's keyword arguments.
    """
    if not isinstance(batchnorm, nn.BatchNorm):
        raise TypeError("use_running_statistics needs a gluon.nn.BatchNorm, got {}".format(
            type(batchnorm).__name__))
    kwargs = getattr(batchnorm, '_kwargs', None)
    if not isinstance(kwargs, dict) or 'use_global_stats' not in kwargs:
        raise RuntimeError("{} keeps no _kwargs['use_global_stats'] in this MXNet; "
                           "gluoncv_fp16 sets it there and is tested with MXNet 1.9"
                           .format(type(batchnorm).__name__))
    kwargs['use_global_stats'] = True
