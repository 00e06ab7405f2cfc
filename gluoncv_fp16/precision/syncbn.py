"""Cross-device SyncBatchNorm that accepts FP16 data (MXNet issue 12257).

Why MXNet's `SyncBatchNorm` rejects FP16 data: the operator's type inference
(`SyncBatchNormProp::InferType` in ``src/operator/contrib/sync_batch_norm-inl.h``) was
copied from BatchNorm and *accepts* FP16 data with FP32 gamma/beta/statistics, but its
`Forward`/`Backward` kernels read every tensor as ``real_t`` (float32) -- there is no
dtype switch. An FP16 input therefore passes graph construction and then dies when the
kernel runs: ``TBlob.get_with_shape: data type do not match specified type. Expected:
half v.s. given float``.

The cheapest correct fix, without a new kernel: widen the data to FP32 in front of the
operator and narrow the result back to the data's dtype. Gamma/beta and the running
statistics stay FP32 (`BatchNorm.cast` already keeps them FP32 under
``cast('float16')``), the statistics are summed in FP32, and the cast's gradient narrows
the data gradient back to FP16 -- the same numbers a GPU BatchNorm computes in
half precision with FP32 accumulation. The price is one cast each way per layer.

Under MXNet AMP the layer is not cast; AMP lists ``_contrib_SyncBatchNorm`` as an FP32
operator and inserts the FP32 cast itself (the output is then FP32, AMP's choice).

The synchronisation is MXNet's: each device's operator instance puts its per-channel
sums in a process-wide table keyed by the layer's prefix and blocks its engine worker on
a barrier until all `num_devices` have arrived. It therefore deadlocks whenever one
device's operator cannot start while another waits at the barrier:

* under ``MXNET_ENGINE_TYPE=NaiveEngine`` (one operator at a time) -- refused here;
* when a training-mode forward runs on fewer contexts than `num_devices` (e.g. GluonCV's
  transform runs an FP32 forward on one CPU copy of the net) -- refused here;
* on several CPU contexts (``cpu(0)``, ``cpu(1)`` standing in for GPUs) with MXNet's
  default ``MXNET_CPU_TEMP_COPY=4``: all CPU contexts share one round-robin pool of
  temp-space resources (GPUs get one pool each), the engine grants each resource to
  operators in push order, and Python pushes device 0's whole graph before device 1's.
  A device-0 operator *after* the barrier can then hold the queue of a resource that a
  device-1 operator *before* the barrier needs. Measured on yolo3_mobilenet0.25 (two CPU
  contexts, 64 px): hangs with 4 or 64 copies, trains with 256 or 1024. Set e.g.
  ``MXNET_CPU_TEMP_COPY=1024`` before MXNet starts; a warning says so, and training
  refuses to start (both decided by :func:`cpu_temp_pool_shortfall`).
"""
import functools
import logging
import os

import numpy as np
from mxnet import autograd, context, ndarray
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

__all__ = ['HalfSafeSyncBatchNorm', 'syncbn_kwargs', 'cpu_temp_pool_shortfall',
           'CPU_TEMP_COPY_NEEDED']

logger = logging.getLogger(__name__)


def _check_num_devices(num_devices):
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) \
            or num_devices < 1:
        raise ValueError("num_devices must be a positive int (the number of contexts the "
                         "batch is split over), got {!r}".format(num_devices))


CPU_TEMP_COPY_NEEDED = 256  # measured: 4 and 64 hang yolo3_mobilenet0.25 on 2 CPU contexts


def cpu_temp_pool_shortfall(num_cpu_contexts, environ=None):
    """How ``MXNET_CPU_TEMP_COPY`` is set when it is too small for SyncBatchNorm over
    `num_cpu_contexts` CPU contexts (see module doc), e.g. ``'MXNET_CPU_TEMP_COPY=64'``
    or ``'MXNET_CPU_TEMP_COPY unset (MXNet default 4)'``; None when it is large enough or
    fewer than two CPU contexts synchronise.

    The one place that decides: training refuses such a run (`TrainConfig.validate`),
    the layer itself warns (for networks built without the training config).
    """
    environ = os.environ if environ is None else environ
    if num_cpu_contexts < 2:
        return None
    text = environ.get('MXNET_CPU_TEMP_COPY')
    try:
        copies = int(text if text is not None else '4')
    except ValueError:
        copies = 0
    if copies >= CPU_TEMP_COPY_NEEDED:
        return None
    if text is None:
        return 'MXNET_CPU_TEMP_COPY unset (MXNet default 4)'
    return 'MXNET_CPU_TEMP_COPY=' + text


def _warn_if_cpu_pool_small(contexts):
    """Warn about the shared CPU temp-space pool deadlock (see module doc)."""
    cpus = sum(ctx.device_type.startswith('cpu') for ctx in contexts)
    setting = cpu_temp_pool_shortfall(cpus)
    if setting is not None:
        _warn_once(cpus, setting)


@functools.lru_cache(maxsize=None)
def _warn_once(num_cpu_contexts, setting):
    # Every SyncBN layer checks at graph-build time; one message per setting is enough.
    logger.warning(
        "SyncBatchNorm over %d CPU contexts with %s may deadlock (CPU contexts share "
        "MXNet's temp-space pool); export MXNET_CPU_TEMP_COPY=1024 before starting Python",
        num_cpu_contexts, setting)


def _check_engine(num_devices):
    # The operator's barrier waits for the other devices inside the engine; the naive
    # engine runs one operator at a time, so the first device would wait forever.
    if num_devices > 1 and os.environ.get('MXNET_ENGINE_TYPE') == 'NaiveEngine':
        raise RuntimeError(
            "SyncBatchNorm with num_devices={} deadlocks under MXNET_ENGINE_TYPE="
            "NaiveEngine (its devices must run concurrently). Unset MXNET_ENGINE_TYPE "
            "or train without SyncBatchNorm.".format(num_devices))


class HalfSafeSyncBatchNorm(SyncBatchNorm):
    """MXNet's `SyncBatchNorm` that also takes FP16 data and returns the data's dtype.

    Parameters are those of :class:`mxnet.gluon.contrib.nn.SyncBatchNorm`; give
    `num_devices` explicitly (MXNet's default counts GPUs, which is wrong on CPU
    contexts and when training on a subset of GPUs).

    Inputs: **data** (N, C, ...) float16 or float32. Output: same shape and dtype.
    Gamma, beta and the running statistics are float32 in every mode.

    The parameter names are those of a plain `nn.BatchNorm` (``..._batchnorm0_gamma``),
    so a checkpoint trained with SyncBN loads into the same network built without it and
    back.

    Raises
    ------
    ValueError
        `num_devices` is not a positive int.
    RuntimeError
        `num_devices` > 1 under the NaiveEngine, where the device barrier deadlocks.
    """

    def __init__(self, in_channels=0, num_devices=None, **kwargs):
        if num_devices is None:
            num_devices = max(context.num_gpus(), 1)
            logger.warning("SyncBatchNorm without num_devices: assuming %d (the visible "
                           "GPUs); pass num_devices=len(ctx) if that is wrong",
                           num_devices)
        _check_num_devices(num_devices)
        _check_engine(num_devices)
        super().__init__(in_channels=in_channels, num_devices=int(num_devices), **kwargs)
        self._num_devices = int(num_devices)
        self._synchronises = not kwargs.get('use_global_stats', False)
        self._data_dtype = 'float32'

    def _alias(self):
        # Same default prefix as nn.BatchNorm: keeps parameter names (and so trainer and
        # checkpoint keys) identical with and without --syncbn. The prefix is also the
        # operator's synchronisation key; prefixes stay unique per scope.
        return 'batchnorm'

    def cast(self, dtype):
        """Record the data dtype the graph will see; parameters stay FP32 (BatchNorm rule)."""
        self._data_dtype = np.dtype(dtype).name
        super().cast(dtype)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        self._check_contexts()
        # Imperatively the dtype is known; a symbolic graph follows the last cast().
        dtype = np.dtype(x.dtype).name if F is ndarray else self._data_dtype
        if dtype == 'float32':
            return super().hybrid_forward(F, x, gamma, beta, running_mean, running_var)
        out = super().hybrid_forward(F, F.cast(x, dtype='float32'), gamma, beta,
                                     running_mean, running_var)
        return F.cast(out, dtype=dtype)

    def _check_contexts(self):
        """Fail instead of deadlocking when fewer devices than `num_devices` can call in.

        A training-mode call on a copy living on one context (e.g. the FP32 fake forward
        GluonCV's YOLO3DefaultTrainTransform runs on CPU) would wait at the barrier
        forever; build such helper networks with plain BatchNorm instead.
        """
        if self._num_devices == 1 or not self._synchronises or not autograd.is_training():
            return
        try:
            contexts = self.gamma.list_ctx()
        except RuntimeError:  # not initialised yet: nothing to compare
            return
        _warn_if_cpu_pool_small(contexts)
        if len(contexts) < self._num_devices:
            raise RuntimeError(
                "{}: SyncBatchNorm expects num_devices={} but its parameters live on {} "
                "context(s) {}; a training-mode forward would wait forever for the other "
                "devices. Initialise the net on all {} contexts, or build this copy with "
                "plain BatchNorm (e.g. the network given to the data transform)."
                .format(self.name, self._num_devices, len(contexts), contexts,
                        self._num_devices))


def syncbn_kwargs(num_devices, **norm_kwargs):
    """`norm_layer` / `norm_kwargs` for ``get_model(name, **syncbn_kwargs(n))``.

    Parameters
    ----------
    num_devices : int
        Number of contexts each batch is split over (``len(ctx)``). With 1 there is
        nothing to synchronise, so plain `nn.BatchNorm` is returned (same parameter
        names, no per-layer barrier).
    **norm_kwargs
        Extra keyword arguments for every norm layer (e.g. ``momentum=0.99``).

    Returns
    -------
    dict
        ``{'norm_layer': class, 'norm_kwargs': dict}``.
    """
    _check_num_devices(num_devices)
    if num_devices == 1:
        logger.info("SyncBatchNorm requested on one device: using plain BatchNorm")
        return {'norm_layer': nn.BatchNorm, 'norm_kwargs': dict(norm_kwargs)}
    _check_engine(num_devices)
    return {'norm_layer': HalfSafeSyncBatchNorm,
            'norm_kwargs': dict(norm_kwargs, num_devices=int(num_devices))}
