"""FP16 storage with FP32-accumulated Conv/Dense/BatchNorm, so half-precision nets run on CPU.

MXNet's CPU build has no FP16 GEMM ("FP16 gemm on cpu not implemented!"), so a network
cast to float16 cannot run a single convolution on a CPU context. The layers here keep
FP16 inputs, weights and gradients, and only widen to FP32 for the convolution or
matrix product itself, then narrow the result back to FP16 -- what a GPU's tensor cores
do in hardware. BatchNorm needs the same treatment on CPU: MXNet's CPU kernel computes
the batch variance of FP16 data in FP16, which overflows once activations exceed ~256
(running_var becomes inf), while cuDNN accumulates in FP32. This exists so the FP16
training path can be run and tested on machines without a GPU; it is not faster than
FP32 on a CPU.

The widening is decided when the graph is built, from the weight's dtype and contexts:
FP32 weights, or weights living only on GPUs, take MXNet's own code path unchanged.
"""
import numpy as np
from mxnet.gluon import nn

__all__ = ['HalfSafeConv2D', 'HalfSafeDense', 'HalfSafeBatchNorm', 'make_half_safe',
           'needs_fp32_accumulation']


def _lives_on_cpu(param):
    try:
        contexts = param.list_ctx()
    except RuntimeError:  # not initialised: a symbolic trace with no device to run on
        return False
    return any(ctx.device_type.startswith('cpu') for ctx in contexts)


def needs_fp32_accumulation(param):
    """True when `param` is FP16 and lives on a CPU context (where MXNet has no FP16 GEMM)."""
    return np.dtype(param.dtype) == np.float16 and _lives_on_cpu(param)


def _widened(F, layer_forward, x, weight, bias):
    """Run `layer_forward` in FP32 on FP16 tensors and return an FP16 result."""
    x32 = F.cast(x, dtype='float32')
    w32 = F.cast(weight, dtype='float32')
    b32 = None if bias is None else F.cast(bias, dtype='float32')
    return F.cast(layer_forward(F, x32, w32, b32), dtype='float16')


class HalfSafeConv2D(nn.Conv2D):
    """`nn.Conv2D` that also runs with FP16 weights on a CPU context (see module doc)."""

    def hybrid_forward(self, F, x, weight, bias=None):
        if needs_fp32_accumulation(self.weight):
            return _widened(F, super().hybrid_forward, x, weight, bias)
        return super().hybrid_forward(F, x, weight, bias)


class HalfSafeDense(nn.Dense):
    """`nn.Dense` that also runs with FP16 weights on a CPU context (see module doc)."""

    def hybrid_forward(self, F, x, weight, bias=None):
        if needs_fp32_accumulation(self.weight):
            return _widened(F, super().hybrid_forward, x, weight, bias)
        return super().hybrid_forward(F, x, weight, bias)


class HalfSafeBatchNorm(nn.BatchNorm):
    """`nn.BatchNorm` that accumulates FP16 data's statistics in FP32 on CPU.

    Its parameters are FP32 whatever the cast (MXNet's rule), so the data dtype is
    remembered from `cast` instead of read from the weights.
    """

    def cast(self, dtype):
        self._half_safe_data_dtype = np.dtype(dtype).name
        super().cast(dtype)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        half_data = getattr(self, '_half_safe_data_dtype', 'float32') == 'float16'
        if half_data and _lives_on_cpu(self.gamma):
            out = super().hybrid_forward(F, F.cast(x, dtype='float32'), gamma, beta,
                                         running_mean, running_var)
            return F.cast(out, dtype='float16')
        return super().hybrid_forward(F, x, gamma, beta, running_mean, running_var)


_HALF_SAFE = {nn.Conv2D: HalfSafeConv2D, nn.Dense: HalfSafeDense,
              nn.BatchNorm: HalfSafeBatchNorm}


def make_half_safe(block):
    """Turn every plain `nn.Conv2D` / `nn.Dense` / `nn.BatchNorm` under `block` into its
    half-safe subclass.

    The subclasses add no state and keep parameter names, so this is invisible to
    checkpoints and, with FP32 weights, to the numbers. Call it before the first forward
    (a graph already cached keeps its layers until the next `cast` or `hybridize`).
    Returns `block` for chaining.
    """
    def convert(child):
        half_safe = _HALF_SAFE.get(type(child))
        if half_safe is not None:
            child.__class__ = half_safe
    block.apply(convert)
    return block
