"""Devices: build contexts and refuse, in one line, what a device cannot run."""
import mxnet as mx

from .config import ConfigError

__all__ = ['make_contexts', 'check_devices', 'probe_fp16']


def make_contexts(names):
    """('gpu:0', 'cpu:1', ...) -> [mx.gpu(0), mx.cpu(1), ...]."""
    contexts = []
    for name in names:
        kind, _, index = name.partition(':')
        contexts.append(getattr(mx, kind)(int(index or 0)))
    return contexts


def probe_fp16(ctx):
    """Run one tiny FP16 convolution on `ctx`; raise `ConfigError` if it cannot."""
    from ..precision.cpu_half import HalfSafeConv2D
    conv = HalfSafeConv2D(1, kernel_size=1, in_channels=1)
    conv.initialize(ctx=ctx)
    conv.cast('float16')
    try:
        conv(mx.nd.ones((1, 1, 2, 2), ctx=ctx, dtype='float16')).asnumpy()
    except mx.base.MXNetError as err:
        raise ConfigError(
            "--fp16: {} cannot run float16 convolutions ({}). Use a GPU with compute "
            "capability >= 5.3 (Pascal or newer) or train without --fp16.".format(
                ctx, str(err).strip().splitlines()[-1])) from None


def check_devices(contexts, policy, amp_restricted=False):
    """Fail before any work if the devices cannot run `policy`.

    `amp_restricted` means AMP was configured with an op list the CPU can execute
    (used by tests to run AMP's code path on CPU).
    """
    gpu_ids = [c.device_id for c in contexts if c.device_type == 'gpu']
    if gpu_ids:
        visible = mx.context.num_gpus()
        if max(gpu_ids) >= visible:
            raise ConfigError(
                "--gpus {}: MXNet sees {} GPU(s) (a CPU-only mxnet build, or no CUDA driver). "
                "Use --gpus '' to train on the CPU, or install the CUDA build "
                "(pip install -e .[cu112]).".format(','.join(map(str, gpu_ids)), visible))
    on_cpu = any(c.device_type == 'cpu' for c in contexts)
    if policy.uses_amp and on_cpu and not amp_restricted:
        raise ConfigError(
            "--amp on CPU: MXNet AMP runs convolutions in float16, which MXNet's CPU build "
            "cannot execute ('FP16 gemm on cpu not implemented'). Use --fp16 (FP16 storage "
            "with FP32 accumulation on CPU) or run --amp on a GPU.")
    if policy.compute_dtype == 'float16':
        for ctx in contexts:
            probe_fp16(ctx)
