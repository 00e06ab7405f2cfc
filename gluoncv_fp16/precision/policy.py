"""Precision policies (fp32 | fp16 | amp) and the switch between FP32 and FP16 mid-run.

A policy is a small immutable object made from a name; every dtype decision of the
training loop is one of its methods, so the loop has no ``if fp16`` branches:

* ``fp32``: as GluonCV.
* ``fp16``: the network is cast to float16 (BatchNorm and layers that declare
  themselves FP32 keep FP32 parameters), the batch image is cast to float16, and SGD
  keeps FP32 master weights (``multi_precision=True``). Loss scaling is needed.
* ``amp``: MXNet AMP rewrites operators process-wide to float16 where safe. It must
  be switched on before any network is built and can never be switched off again.
"""
import logging

import numpy as np

__all__ = ['PrecisionPolicy', 'get_policy', 'POLICY_NAMES', 'activate_amp', 'amp_active']

logger = logging.getLogger(__name__)

POLICY_NAMES = ('fp32', 'fp16', 'amp')
_AMP_STATE = {'active': False}  # the one piece of process-wide state: AMP cannot be undone


class PrecisionPolicy:
    """How one precision mode trains. Make it with :func:`get_policy`.

    Attributes
    ----------
    name : str
        'fp32', 'fp16' or 'amp'.
    compute_dtype : str
        dtype of the network's weights and activations ('float32' for amp: AMP casts
        per operator at run time).
    needs_loss_scaling : bool
        Whether gradients must be protected against FP16 underflow.
    """

    __slots__ = ('name', 'compute_dtype', 'needs_loss_scaling', 'uses_amp')

    def __init__(self, name, compute_dtype, needs_loss_scaling, uses_amp=False):
        for attr, value in (('name', name), ('compute_dtype', compute_dtype),
                            ('needs_loss_scaling', needs_loss_scaling), ('uses_amp', uses_amp)):
            object.__setattr__(self, attr, value)

    def __setattr__(self, key, value):
        raise AttributeError("PrecisionPolicy is immutable; make another with get_policy()")

    def __repr__(self):
        return "PrecisionPolicy({!r})".format(self.name)

    def prepare_net(self, net):
        """Cast the (initialised) training network to the compute dtype; returns it."""
        if self.compute_dtype != 'float32':
            net.cast(self.compute_dtype)
        return net

    def cast_input(self, array):
        """The batch image in the compute dtype (targets stay FP32)."""
        return array if array.dtype == np.dtype(self.compute_dtype) \
            else array.astype(self.compute_dtype)


_POLICIES = {
    'fp32': PrecisionPolicy('fp32', 'float32', needs_loss_scaling=False),
    'fp16': PrecisionPolicy('fp16', 'float16', needs_loss_scaling=True),
    'amp': PrecisionPolicy('amp', 'float32', needs_loss_scaling=True, uses_amp=True),
}


def get_policy(name):
    """The policy for 'fp32', 'fp16' or 'amp'."""
    try:
        return _POLICIES[str(name).lower()]
    except KeyError:
        raise ValueError("unknown precision {!r}; choose one of {} (CLI: --fp16, --amp, or "
                         "neither for fp32)".format(name, list(POLICY_NAMES))) from None


def amp_active():
    """Whether MXNet AMP has been switched on in this process."""
    return _AMP_STATE['active']


def activate_amp(policy, **amp_init_kwargs):
    """Switch MXNet AMP on for an 'amp' policy; refuse mixing AMP with other modes.

    Call it before building any network (AMP patches operator functions at import of
    the network code's calls) and after building the data transforms: GluonCV's
    transforms run an FP32 forward that AMP would break on CPU (GluonCV issue 1277).
    `amp_init_kwargs` go to `mxnet.contrib.amp.init` (e.g. a restricted op list).
    """
    if not policy.uses_amp:
        if amp_active():
            raise RuntimeError("MXNet AMP is already active in this process and cannot be "
                               "turned off; run the {} job in a new process".format(policy.name))
        return
    if amp_active():
        return
    from mxnet.contrib import amp
    amp.init(**amp_init_kwargs)
    _AMP_STATE['active'] = True
    logger.info('MXNet AMP initialised (process-wide, cannot be undone)')
