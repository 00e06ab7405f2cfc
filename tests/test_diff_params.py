"""scripts/diff_params.py and gluoncv_fp16.utils.param_diff: numbers, mismatches, exit codes."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from helpers import ROOT, child_env
from gluoncv_fp16.bench import diff_params
from gluoncv_fp16.utils.param_diff import (DEFAULT_TOL, ParamFileError, compare_params,
                                           read_param_file, update_error)


def small_net():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, in_channels=3), nn.BatchNorm(in_channels=8),
            nn.Dense(5, in_units=8 * 6 * 6))
    net.initialize(mx.init.Xavier())
    return net


def save(net, path):
    net.save_parameters(str(path))
    return str(path)


@pytest.fixture
def fp32_and_fp16(tmp_path):
    """The same weights saved in FP32 and, after cast('float16'), in FP16."""
    net = small_net()
    a = save(net, tmp_path / 'a32.params')
    net.cast('float16')
    return a, save(net, tmp_path / 'b16.params')


def run(argv, capsys):
    code = diff_params.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fp16_copy_of_fp32_file_is_within_default_tolerance(fp32_and_fp16, capsys):
    code, out, _ = run(list(fp32_and_fp16), capsys)
    assert code == 0, out
    assert 'float32/float16' in out and out.strip().splitlines()[-1].startswith('OK')
    report = compare_params(*[read_param_file(p) for p in fp32_and_fp16])
    # FP16 rounding moves a value by at most 2**-11 of itself (and of the tensor's max).
    worst = report.rows[0].max_rel
    assert 0 < worst <= 2 ** -11 < DEFAULT_TOL
    # Tightening the tolerance below FP16 rounding makes the same files fail.
    assert run(list(fp32_and_fp16) + ['--tol', '1e-5'], capsys)[0] == 1


def test_perturbed_parameter_is_listed_first_and_fails(tmp_path, capsys):
    net = small_net()
    a = save(net, tmp_path / 'a.params')
    weight = net[2].weight
    weight.set_data(weight.data() + 0.01 * weight.data().abs().max())
    b = save(net, tmp_path / 'b.params')
    code, out, _ = run([a, b], capsys)
    table = out.splitlines()[3:]  # after the two file lines and the header
    assert code == 1
    assert table[0].startswith('2.weight') and table[0].endswith('> tol')
    assert 'FAIL: 8 compared, 1 above tol' in out and '(2.weight)' in out
    row = compare_params(read_param_file(a), read_param_file(b)).rows[0]
    assert row.max_rel == pytest.approx(0.01, rel=2e-2)  # scale is max|B| = 1.01 max|A|


def test_name_and_shape_mismatches_are_reported(tmp_path, capsys):
    rng = np.random.RandomState(0)
    a_arrays = {'w': rng.randn(3, 4), 'only_a': rng.randn(2), 'bias': rng.randn(4)}
    b_arrays = {'w': a_arrays['w'], 'only_b': rng.randn(2), 'bias': rng.randn(5)}
    paths = []
    for name, arrays in (('a', a_arrays), ('b', b_arrays)):
        paths.append(str(tmp_path / (name + '.params')))
        mx.nd.save(paths[-1], {k: mx.nd.array(v) for k, v in arrays.items()})
    code, out, _ = run(paths, capsys)
    assert code == 1
    assert 'only in A: only_a' in out and 'only in B: only_b' in out
    assert 'shape differs: bias A(4,) B(5,)' in out
    assert out.strip().splitlines()[-1].startswith('FAIL: 1 compared, 0 above tol')


def test_non_finite_values_in_one_file_are_the_worst(tmp_path):
    ok = {'x': np.ones(4, 'float32'), 'y': np.arange(3, dtype='float32')}
    bad = dict(ok, x=np.array([1, np.nan, 1, 1], 'float32'))
    report = compare_params(ok, bad)
    assert report.rows[0].name == 'x' and report.rows[0].max_rel == float('inf')
    assert not report.passed()
    assert compare_params(bad, bad).passed()  # the same NaN in both is no difference


def test_export_style_names_are_matched_with_save_parameters_names(tmp_path):
    path = str(tmp_path / 'export.params')
    mx.nd.save(path, {'arg:conv_weight': mx.nd.ones((2, 2)), 'aux:bn_mean': mx.nd.zeros(2)})
    assert sorted(read_param_file(path)) == ['bn_mean', 'conv_weight']


def test_project_checkpoints_are_accepted(tmp_path, capsys):
    from gluoncv_fp16.train.checkpoint import save_checkpoint
    net = small_net()
    ckpt = str(tmp_path / 'run.ckpt')
    save_checkpoint(ckpt, net, {'epoch': 0})
    net.cast('float16')
    code, out, _ = run([ckpt, save(net, tmp_path / 'b16.params')], capsys)
    assert code == 0, out
    with pytest.raises(ParamFileError, match='zip file'):
        read_param_file(ckpt)  # the library alone does not read training checkpoints


@pytest.mark.parametrize('make_bad, message', [
    (lambda d: str(d / 'missing.params'), 'no such file'),
    (lambda d: _write(d / 'junk.params', b'not a params file'), 'not an MXNet parameter file'),
    (lambda d: _save_list(d / 'list.params'), 'no named parameters'),
    (lambda d: _write(d / 'bad.ckpt', _zip_bytes()), 'not a gluoncv_fp16 checkpoint'),
])
def test_unusable_input_exits_2_with_one_line(tmp_path, fp32_and_fp16, capsys, make_bad,
                                              message):
    code, out, err = run([fp32_and_fp16[0], make_bad(tmp_path)], capsys)
    assert code == 2 and out == ''
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_script_run_as_a_program_exits_2_without_traceback(fp32_and_fp16):
    env = child_env()
    script = os.path.join(ROOT, 'scripts', 'diff_params.py')
    proc = subprocess.run([sys.executable, script, fp32_and_fp16[0], 'nope.params'], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "diff_params.py: error: no such file: 'nope.params'"


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def _save_list(path):
    mx.nd.save(str(path), [mx.nd.ones(2)])
    return str(path)


def _zip_bytes():
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        zf.writestr('hello.txt', 'hi')
    return buf.getvalue()


def test_update_error_measures_the_whole_update_not_the_weights():
    start = {'w': np.full(4, 100.0), 'b': np.zeros(2)}
    a = {'w': start['w'] + [1.0, 0, 0, 0], 'b': np.array([0.0, 1.0])}
    same = {k: v.copy() for k, v in a.items()}
    assert update_error(start, a, same) == (0.0, pytest.approx(1.0))
    # half of the update missing: error 0.5 of it, while weight w differs by 0.5%
    half = {k: start[k] + (a[k] - start[k]) / 2 for k in a}
    rel, cosine = update_error(start, a, half)
    assert rel == pytest.approx(0.5) and cosine == pytest.approx(1.0)
    rows = {r.name: r for r in compare_params(a, half).rows}
    assert rows['w'].max_rel == pytest.approx(0.5 / 101)
    rel, _ = update_error(start, a, half, names=['b'])     # restricted to the named tensors
    assert rel == pytest.approx(0.5)
    with pytest.raises(ValueError, match='did not change'):
        update_error(start, start, a)
