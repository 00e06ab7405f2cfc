"""Devices: build contexts, probe every one before any work, and say in one line what a
device cannot run.

Every mode probes (FP32 too): a tiny convolution in FP32, and in FP16 for --fp16/--amp.
The most common failure on new cards is a build without code for them: the MXNet 1.9.1
pip wheels (mxnet-cu112, mxnet-cu117) carry machine code for sm_50, 60, 70, 80 and 86
and no PTX, so Hopper (compute capability 9.0: H100, H200) and newer fail at the first
kernel with CUDA's "no kernel image is available for execution on the device". That is
recognised from MXNet's error text and the card's compute capability, and reported as
what it is, with what to do.
"""
import re
import subprocess

import mxnet as mx

from .config import ConfigError

__all__ = ['make_contexts', 'check_devices', 'probe_device', 'compute_capability',
           'gpu_name', 'wheel_runs_on', 'is_missing_kernel_error', 'missing_kernel_message',
           'WHEEL_ARCHS']

# Architectures the MXNet 1.9.1 pip wheels carry code for (no PTX): DESIGN.md, "GPUs".
WHEEL_ARCHS = (50, 60, 70, 80, 86)
# How CUDA words "this binary has no code for this GPU" (cudaErrorNoKernelImageForDevice,
# cudaErrorInvalidKernelImage, and cudaErrorInvalidDeviceFunction from older toolkits).
_MISSING_KERNEL_TEXTS = ('no kernel image is available for execution on the device',
                         'device kernel image is invalid', 'invalid device function')


def make_contexts(names):
    """('gpu:0', 'cpu:1', ...) -> [mx.gpu(0), mx.cpu(1), ...]."""
    contexts = []
    for name in names:
        kind, _, index = name.partition(':')
        contexts.append(getattr(mx, kind)(int(index or 0)))
    return contexts


def _nvidia_smi(device_id, field):
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=' + field, '--format=csv,noheader',
                              '-i', str(device_id)], capture_output=True, text=True,
                             timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return lines[0].strip() if lines else None


def compute_capability(ctx):
    """(major, minor) of a GPU context, or None when neither MXNet (through the CUDA
    driver) nor ``nvidia-smi`` can tell."""
    if ctx.device_type != 'gpu':
        return None
    try:
        value = int(mx.util.get_cuda_compute_capability(ctx))
        return value // 10, value % 10
    except (OSError, ValueError, RuntimeError, AttributeError):
        pass
    text = _nvidia_smi(ctx.device_id, 'compute_cap')  # drivers >= 510 know this field
    try:
        major, minor = text.split('.')
        return int(major), int(minor)
    except (AttributeError, ValueError):
        return None


def gpu_name(ctx):
    """The card's name from ``nvidia-smi``, or None."""
    return _nvidia_smi(ctx.device_id, 'name') if ctx.device_type == 'gpu' else None


def wheel_runs_on(capability):
    """Whether the pip wheels' code runs on a card of `capability` (major, minor): a cubin
    for sm_XY runs on compute capability X.Z with Z >= Y, and there is no PTX to JIT."""
    major, minor = capability
    return any(arch // 10 == major and arch % 10 <= minor for arch in WHEEL_ARCHS)


def is_missing_kernel_error(text):
    """Whether an MXNet error says the build has no code for the GPU: CUDA's words, or
    its error number in MXNet's check (209 since CUDA 10.1, 48 before)."""
    lowered = str(text).lower()
    return any(marker in lowered for marker in _MISSING_KERNEL_TEXTS) or \
        re.search(r'err == cudasuccess \((209|48) vs\. 0\)', lowered) is not None


def missing_kernel_message(ctx, capability=None, name=None):
    """One line: which card, that this MXNet build has no code for it, what to do."""
    card = ', '.join(p for p in (name, 'compute capability {}.{}'.format(*capability)
                                 if capability else 'compute capability unknown') if p)
    return ("{} ({}): the installed MXNet {} has no GPU code for this card (CUDA: 'no kernel "
            "image is available for execution on the device'). The MXNet 1.9.1 pip wheels "
            "carry code for compute capability 5.0-8.6 (sm_50/60/70/80/86) and no PTX, so "
            "cards of 9.0 and newer (H100, H200) cannot run them. Use a GPU of compute "
            "capability 5.0-8.9, or build MXNet from source with its CUDA architecture "
            "list including {}; --gpus '' trains on the CPU.".format(
                ctx, card, mx.__version__,
                '{}{}'.format(*capability) if capability else "your card's"))


def _run_probe(ctx, dtype):
    """A 1x1 convolution, an addition and a read back, on `ctx` in `dtype`."""
    from ..precision.cpu_half import HalfSafeConv2D
    conv = HalfSafeConv2D(1, kernel_size=1, in_channels=1)
    conv.initialize(mx.init.One(), ctx=ctx)  # draws nothing from MXNet's random state
    conv.cast(dtype)
    x = mx.nd.ones((1, 1, 2, 2), ctx=ctx, dtype=dtype)
    (conv(x) + x).asnumpy()


def probe_device(ctx, dtype='float32'):
    """Run one tiny convolution on `ctx`; raise `ConfigError` (one line) if it cannot."""
    try:
        _run_probe(ctx, dtype)
    except mx.base.MXNetError as err:
        text = str(err)
        capability = compute_capability(ctx)
        if is_missing_kernel_error(text) or (capability and not wheel_runs_on(capability)
                                             and 'cuda' in text.lower()):
            raise ConfigError(missing_kernel_message(ctx, capability, gpu_name(ctx))) from None
        last = text.strip().splitlines()[-1] if text.strip() else type(err).__name__
        hint = ''
        if dtype == 'float16':
            hint = (' FP16 arithmetic needs compute capability >= 5.3 (this card: {}.{}).'
                    .format(*capability) if capability and capability < (5, 3) else '')
            hint += ' Train without --fp16/--amp.'
        raise ConfigError('{} cannot run a {} convolution ({}).{} scripts/device_check.py '
                          'writes a full report of this machine.'.format(
                              ctx, dtype, last, hint)) from None


def check_devices(contexts, policy, amp_restricted=False):
    """Fail before any work if the devices cannot run `policy`.

    Every device runs an FP32 probe, and an FP16 one for FP16 and AMP policies.
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
    for ctx in contexts:
        for dtype in policy.device_dtypes:
            probe_device(ctx, dtype)
