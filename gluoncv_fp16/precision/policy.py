"""The precision-mode registry: one immutable policy per mode, made from its name.

Every other module asks a policy, never compares mode names: what dtype the network and
the batch take, whether the optimizer keeps FP32 masters, whether the loss is scaled and
by whom, which dtypes the devices must run, whether an FP32 warm-up may come first, and
the command-line flag that picks the mode (the flags' help, their error messages and
``docs/options.md`` are generated from here). The names are also what checkpoints and
metrics files store as the precision phase, so they never change.

* ``fp32``: as GluonCV.
* ``fp16``: the network is cast to float16 (BatchNorm and layers that declare
  themselves FP32 keep FP32 parameters), the batch image is cast to float16, and SGD
  keeps FP32 master weights (``multi_precision=True``). Loss scaling is needed.
* ``amp``: MXNet AMP rewrites operators process-wide to float16 where safe. It must
  be switched on before any network is built and can never be switched off again.
"""
import difflib
import logging

import numpy as np

from .amp_scaler import AmpLossScaler
from .loss_scaler import LossScaler, make_loss_scaler

__all__ = ['PrecisionPolicy', 'get_policy', 'policy_names', 'policies', 'FULL_PRECISION',
           'activate_amp', 'amp_active', 'precision_from_flags', 'flags_of']

logger = logging.getLogger(__name__)

FULL_PRECISION = 'fp32'  # what a network is built in, the reference, warm-up and fallback
_REGISTRY = {}  # name -> PrecisionPolicy, in registration order
_AMP_STATE = {'active': False}  # the one piece of process-wide state: AMP cannot be undone


class PrecisionPolicy:
    """How one precision mode trains. Get it with :func:`get_policy`; never built by hand.

    Attributes
    ----------
    name : str
        The mode's name ('fp32', 'fp16', 'amp'): what checkpoints and metrics store.
    compute_dtype : str
        dtype of the network's weights and activations ('float32' for amp: AMP casts
        per operator at run time).
    master_dtype : str
        dtype of the weights the optimizer updates ('float32' in every mode).
    needs_loss_scaling : bool
        Whether gradients must be protected against FP16 underflow.
    uses_amp : bool
        Whether MXNet AMP runs the mode (and scales the loss itself).
    allows_fp32_warmup : bool
        Whether a run may train its first epochs in FP32 and switch to this mode in the
        same process (AMP cannot be switched on after a network was built).
    flag : str or None
        The training command's switch that picks the mode (None: the default mode).
    gluoncv_flag : bool
        Whether GluonCV's own ``train_yolo3.py`` has that switch.
    summary : str
        What the mode does, in a line (the switch's ``--help``).
    """

    __slots__ = ('name', 'compute_dtype', 'master_dtype', 'needs_loss_scaling', 'uses_amp',
                 'allows_fp32_warmup', 'flag', 'gluoncv_flag', 'summary')

    def __init__(self, name, compute_dtype, needs_loss_scaling, uses_amp=False,
                 allows_fp32_warmup=False, flag=None, gluoncv_flag=False, summary='',
                 master_dtype='float32'):
        for attr, value in (('name', name), ('compute_dtype', compute_dtype),
                            ('master_dtype', master_dtype),
                            ('needs_loss_scaling', needs_loss_scaling), ('uses_amp', uses_amp),
                            ('allows_fp32_warmup', allows_fp32_warmup), ('flag', flag),
                            ('gluoncv_flag', gluoncv_flag), ('summary', summary)):
            object.__setattr__(self, attr, value)

    def __setattr__(self, key, value):
        raise AttributeError("PrecisionPolicy is immutable; make another with get_policy()")

    def __repr__(self):
        return "PrecisionPolicy({!r})".format(self.name)

    @property
    def multi_precision(self):
        """Whether the optimizer keeps master weights in another dtype than the network's
        (``gluon.Trainer``'s ``multi_precision``)."""
        return np.dtype(self.compute_dtype) != np.dtype(self.master_dtype)

    @property
    def runs_float16(self):
        """Whether anything runs in float16: the devices must, and the mode is compared
        with FP32 before training (the self-check)."""
        return self.compute_dtype == 'float16' or self.uses_amp

    @property
    def device_dtypes(self):
        """The dtypes every training device must be able to run."""
        return ('float32', 'float16') if self.runs_float16 else ('float32',)

    @property
    def cli_args(self):
        """The training command's arguments that select this mode (a list)."""
        return [self.flag] if self.flag else []

    def label(self, on_gpu=True):
        """The mode's name in reports, saying when FP16 runs on the CPU half path."""
        if self.compute_dtype == 'float16' and not on_gpu:
            return '{} (CPU half path)'.format(self.name)
        return self.name

    def phase_at(self, epoch, fp32_warmup_epochs=0):
        """Name of the policy that trains `epoch`: FP32 during an FP32 warm-up (when this
        mode allows one), else this mode."""
        if self.allows_fp32_warmup and epoch < fp32_warmup_epochs:
            return FULL_PRECISION
        return self.name

    def prepare_net(self, net):
        """Cast the (initialised) training network to the compute dtype; returns it."""
        if self.compute_dtype != 'float32':
            net.cast(self.compute_dtype)
        return net

    def cast_input(self, array):
        """The batch image in the compute dtype (targets stay FP32)."""
        return array if array.dtype == np.dtype(self.compute_dtype) \
            else array.astype(self.compute_dtype)

    def make_loss_scaler(self, spec='dynamic', **kwargs):
        """The loss scaler this mode trains with: AMP's own for amp, `spec` ('dynamic',
        'none' or a fixed scale, see `make_loss_scaler`) where loss scaling is needed,
        a disabled one otherwise (the loop keeps one code path)."""
        if self.uses_amp:
            return AmpLossScaler()
        if self.needs_loss_scaling:
            return make_loss_scaler(spec, **kwargs)
        return LossScaler('none')


def _register(policy):
    if policy.name in _REGISTRY:
        raise ValueError('precision mode {!r} is registered twice'.format(policy.name))
    _REGISTRY[policy.name] = policy
    return policy


_register(PrecisionPolicy(
    FULL_PRECISION, 'float32', needs_loss_scaling=False))
_register(PrecisionPolicy(
    'fp16', 'float16', needs_loss_scaling=True, allows_fp32_warmup=True, flag='--fp16',
    summary='FP16 training with FP32 master weights and loss scaling: the network is cast '
            'to float16 (BatchNorm, decode, targets and loss stay FP32), SGD with '
            'multi_precision'))
_register(PrecisionPolicy(
    'amp', 'float32', needs_loss_scaling=True, uses_amp=True, flag='--amp', gluoncv_flag=True,
    summary="MXNet AMP, for comparison (GPU only: MXNet's CPU build cannot run FP16 "
            "convolutions)"))


def policy_names():
    """Every registered mode name, in registration order (a tuple)."""
    return tuple(_REGISTRY)


def policies(where=None):
    """The registered policies (a list, in registration order), or those for which
    ``where(policy)`` is true, e.g. ``policies(lambda p: p.runs_float16)``."""
    return [p for p in _REGISTRY.values() if where is None or where(p)]


def get_policy(name):
    """The policy of a registered mode name (case-insensitive).

    Raises
    ------
    ValueError
        Unknown name: the message names the close ones, every valid one, and the flags.
    """
    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        close = difflib.get_close_matches(str(name).lower(), list(_REGISTRY), n=1)
        hint = 'did you mean {!r}? '.format(close[0]) if close else ''
        raise ValueError("unknown precision {!r}; {}choose one of {} (command line: {}, or "
                         "none of them for {})".format(name, hint, list(_REGISTRY),
                                                       flags_of(policies()), FULL_PRECISION)
                         ) from None


def flags_of(chosen, joiner='or'):
    """'--fp16 or --amp': the switches of the `chosen` policies, for help and errors."""
    flags = [p.flag for p in chosen if p.flag]
    if len(flags) < 2:
        return ''.join(flags)
    return '{} {} {}'.format(', '.join(flags[:-1]), joiner, flags[-1])


def precision_from_flags(*switches):
    """The mode name picked by the switches of ``policies(lambda p: p.flag)``, given in
    that order (True where given); `FULL_PRECISION` when none is.

    Raises
    ------
    ValueError
        More than one switch given.
    """
    flagged = policies(lambda p: p.flag)
    chosen = [p for p, on in zip(flagged, switches) if on]
    if len(chosen) > 1:
        raise ValueError('{} are different precision modes; choose one'.format(
            flags_of(chosen, 'and')))
    return chosen[0].name if chosen else FULL_PRECISION


def amp_active():
    """Whether MXNet AMP has been switched on in this process."""
    return _AMP_STATE['active']


def activate_amp(policy, **amp_init_kwargs):
    """Switch MXNet AMP on for a policy that uses it; refuse mixing AMP with other modes.

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
