"""Every private MXNet, Gluon and GluonCV attribute the package reads or writes.

Where MXNet 1.9 keeps something the package needs only in a private attribute, the access
is a small function here that says why the private route is needed and which public route
was checked and found wanting. Nothing else in the package touches a private name of
another library, so porting to another MXNet means reading this one file.
"""
from mxnet.gluon import nn

__all__ = ['use_running_statistics']


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
