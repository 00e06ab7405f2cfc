"""Device probes: every mode probes, and a build without code for the card says so in one
line, tested with the error text MXNet really prints (quoted from MXNet's issue tracker)."""
import os
import subprocess

import mxnet as mx
import pytest

from gluoncv_fp16.cli import train as train_cli

from gluoncv_fp16.precision.policy import get_policy
from gluoncv_fp16.train import devices
from gluoncv_fp16.train.config import ConfigError

# What users of MXNet builds without code for their card saw (apache/mxnet issues).
REAL_ERRORS = {
    # 21166: MXNet 1.9.1 on a Jetson AGX Orin (sm_87), CUDA 11.4
    '1.9.1 Orin': 'Check failed: err == cudaSuccess (209 vs. 0) : mxnet_generic_kernel '
                  'ErrStr:no kernel image is available for execution on the device',
    # 20469: MXNet 1.8.0 on Colab, at the first GPU random-number kernel
    '1.8 seed': 'Check failed: err == cudaSuccess (209 vs. 0) : rand_generator_seed_kernel '
                'ErrStr:no kernel image is available for execution on the device',
    # 16527: CUDA 10.0, the older error number
    'CUDA 10.0': '[11:41:41] src/operator/contrib/./.././../common/../operator/mxnet_op.h:794: '
                 'Check failed: err == cudaSuccess (48 vs. 0) : Name: mxnet_generic_kernel '
                 'ErrStr:no kernel image is available for execution on the device',
    # 12142: mshadow's kernels
    'mshadow': '[10:57:16] /work/mxnet/3rdparty/mshadow/mshadow/././././cuda/'
               'tensor_gpu-inl.cuh:110: Check failed: err == cudaSuccess (48 vs. 0) Name: '
               'MapPlanKernel ErrStr:no kernel image is available for execution on the device',
    # 12041: Windows, mxnet-cu80 1.2.0
    'invalid image': 'cudaErrorCudartUnloading : device kernel image is invalid',
}
OTHER_ERRORS = ['[10:11:12] src/storage/./pooled_storage_manager.h:161: cudaMalloc retry '
                'failed: out of memory', 'FP16 gemm on cpu not implemented!',
                'Check failed: err == cudaSuccess (2 vs. 0) : out of memory']


@pytest.mark.parametrize('key', sorted(REAL_ERRORS))
def test_real_missing_kernel_errors_are_recognised(key):
    assert devices.is_missing_kernel_error(REAL_ERRORS[key])


@pytest.mark.parametrize('text', OTHER_ERRORS)
def test_other_errors_are_not_mistaken_for_missing_kernels(text):
    assert not devices.is_missing_kernel_error(text)


@pytest.mark.parametrize('capability, runs', [
    ((5, 0), True), ((5, 2), True), ((6, 1), True), ((7, 5), True), ((8, 0), True),
    ((8, 6), True), ((8, 9), True), ((8, 7), True), ((9, 0), False), ((10, 0), False),
    ((3, 7), False)])
def test_wheel_code_covers_5_0_to_8_x(capability, runs):
    assert devices.wheel_runs_on(capability) is runs


def fail_probe_with(monkeypatch, text, capability=(9, 0), name='NVIDIA H100 80GB HBM3'):
    def probe(ctx, dtype):
        raise mx.base.MXNetError(text)
    monkeypatch.setattr(devices, '_run_probe', probe)
    monkeypatch.setattr(devices, 'compute_capability', lambda ctx: capability)
    monkeypatch.setattr(devices, 'gpu_name', lambda ctx: name)


@pytest.mark.parametrize('key', sorted(REAL_ERRORS))
def test_h100_gets_a_true_one_line_message(monkeypatch, key):
    fail_probe_with(monkeypatch, REAL_ERRORS[key] + '\nStack trace:\n  [bt] (0) libmxnet.so')
    with pytest.raises(ConfigError) as info:
        devices.probe_device(mx.gpu(0), 'float32')
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith('gpu(0) (NVIDIA H100 80GB HBM3, compute capability 9.0): the '
                              'installed MXNet {} has no GPU code for this card'.format(
                                  mx.__version__))
    assert 'no PTX' in message and 'build MXNet from source' in message and '90' in message
    assert 'Pascal' not in message and '>= 5.3' not in message  # the old, wrong advice


def test_unknown_capability_still_names_the_cause(monkeypatch):
    fail_probe_with(monkeypatch, REAL_ERRORS['1.9.1 Orin'], capability=None, name=None)
    with pytest.raises(ConfigError, match=r"gpu\(0\) \(compute capability unknown\): the "
                                          "installed MXNet .* has no GPU code"):
        devices.probe_device(mx.gpu(0), 'float16')


def test_a_cuda_error_on_a_card_outside_the_wheel_is_read_as_missing_code(monkeypatch):
    fail_probe_with(monkeypatch, 'Check failed: e == cudaSuccess: CUDA: unspecified launch')
    with pytest.raises(ConfigError, match='has no GPU code for this card'):
        devices.probe_device(mx.gpu(1), 'float32')


def test_other_fp16_failures_keep_their_own_text(monkeypatch):
    fail_probe_with(monkeypatch, 'cuDNN: CUDNN_STATUS_NOT_SUPPORTED', capability=(5, 2),
                    name='Tesla M60')
    with pytest.raises(ConfigError) as info:
        devices.probe_device(mx.gpu(0), 'float16')
    message = str(info.value)
    assert 'cannot run a float16 convolution (cuDNN: CUDNN_STATUS_NOT_SUPPORTED)' in message
    assert 'needs compute capability >= 5.3 (this card: 5.2)' in message
    assert 'no GPU code' not in message


def test_compute_capability_falls_back_to_nvidia_smi(monkeypatch):
    def no_driver(ctx):
        raise OSError('could not load any of: libcuda.so')
    monkeypatch.setattr(mx.util, 'get_cuda_compute_capability', no_driver)
    calls = []

    def smi(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout='9.0\n', stderr='')
    monkeypatch.setattr(devices.subprocess, 'run', smi)
    assert devices.compute_capability(mx.gpu(3)) == (9, 0)
    assert calls[0][:2] == ['nvidia-smi', '--query-gpu=compute_cap'] and calls[0][-1] == '3'
    monkeypatch.setattr(mx.util, 'get_cuda_compute_capability', lambda ctx: 80)
    assert devices.compute_capability(mx.gpu(0)) == (8, 0)
    assert devices.compute_capability(mx.cpu()) is None


def test_without_nvidia_smi_the_capability_is_unknown(monkeypatch):
    monkeypatch.setattr(mx.util, 'get_cuda_compute_capability',
                        lambda ctx: (_ for _ in ()).throw(OSError('no libcuda')))

    def missing(cmd, **kwargs):
        raise FileNotFoundError(cmd[0])
    monkeypatch.setattr(devices.subprocess, 'run', missing)
    assert devices.compute_capability(mx.gpu(0)) is None and devices.gpu_name(mx.gpu(0)) is None


@pytest.mark.parametrize('mode, dtypes', [('fp32', ['float32']),
                                          ('fp16', ['float32', 'float16'])])
def test_every_mode_probes_every_device(monkeypatch, mode, dtypes):
    seen = []
    monkeypatch.setattr(devices, 'probe_device', lambda ctx, dtype: seen.append((ctx, dtype)))
    devices.check_devices([mx.cpu(0), mx.cpu(1)], get_policy(mode))
    assert seen == [(mx.cpu(i), d) for i in (0, 1) for d in dtypes]


def test_the_real_probe_passes_on_this_cpu():
    devices.check_devices([mx.cpu()], get_policy('fp16'))  # FP32, then the CPU half path


def test_an_fp32_run_on_a_card_without_code_stops_in_one_line(monkeypatch, tmp_path, capsys,
                                                              synthetic_root):
    fail_probe_with(monkeypatch, REAL_ERRORS['1.9.1 Orin'])
    code = train_cli.main(['--dataset', 'synthetic', '--dataset-root', synthetic_root,
                             '--gpus', '', '--save-prefix', str(tmp_path) + os.sep])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and 'Traceback' not in err
    assert 'compute capability 9.0' in err and 'has no GPU code for this card' in err
