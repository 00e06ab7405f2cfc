"""The device report (gluoncv_fp16.cli.check, scripts/device_check.py) on this CPU machine."""
import pytest

from gluoncv_fp16.cli import check as device_check


def test_report_on_two_cpu_contexts(tmp_path, capsys):
    """Build flags, probes, the FP16 self-check, the all-reduce and verdicts (no timing)."""
    out = str(tmp_path / 'report.md')
    assert device_check.main(['--ctx', 'cpu:0,cpu:1', '--data-shape', '64',
                              '--no-benchmark', '--out', out]) == 0
    with open(out) as f:
        text = f.read()
    assert text in capsys.readouterr().out  # printed as well
    assert '| CUDA | CUDNN | NCCL | DIST_KVSTORE | MKLDNN |\n|---|---|---|---|---|\n' \
           '| no | no | no | yes | yes |' in text
    assert text.count('| ok | ok |') == 2  # FP32 and FP16 probes of both contexts
    assert '| fp16 (CPU half path) | agrees | loss error' in text
    assert '| amp | not run: --amp on CPU' in text
    assert '| device | float32 | ok |' in text and '| device | float16 | ok |' in text
    assert '| fp32 | use: the reference' in text
    assert '| fp16 (CPU half path) | do not use for speed: agrees with FP32' in text
    assert '| amp | not available: --amp on CPU' in text


def test_verdicts_follow_agreement_and_speed():
    class Check:
        ok, problem = False, 'gradients differ (cosine 0.9, norm ratio 1.2)'
    fast = {'images_per_sec': 30.0}
    base = {'images_per_sec': 10.0}
    assert device_check.verdict('fp16', None, Check, fast, base, True).startswith(
        'do not use: disagrees with FP32 (gradients differ')
    Check.ok = True
    assert device_check.verdict('fp16', None, Check, fast, base, True) == \
        'use: agrees with FP32, 3.00x FP32 speed'
    assert device_check.verdict('amp', None, Check, {'images_per_sec': 10.2}, base,
                                True).startswith('do not use for speed: agrees with FP32 but '
                                                 '1.02x')
    assert device_check.verdict('amp', 'gpu(0) (compute capability 9.0): no code', None, None,
                                base, True) == \
        'not available: gpu(0) (compute capability 9.0): no code'


def test_unknown_devices_are_one_line(tmp_path, capsys):
    assert device_check.main(['--ctx', 'tpu:0', '--out', str(tmp_path / 'r.md')]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --ctx 'tpu:0'")


@pytest.mark.slow
def test_report_with_throughput(tmp_path):
    out = str(tmp_path / 'report.md')
    assert device_check.main(['--data-shape', '64', '--batch-size', '2', '--warmup', '1',
                              '--iters', '2', '--repeats', '1', '--out', out]) == 0
    with open(out) as f:
        text = f.read()
    assert '| fp32 | ' in text and ' x 64 px |' in text
    assert 'runs at' in text and 'x FP32 speed on CPU' in text
