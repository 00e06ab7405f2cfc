"""INT8 ONNX export (deploy/onnx_int8.py): runs in ONNX Runtime, agrees with FP32 within the
stated tolerance, eval reports its mAP beside FP32, the benchmark runs it, bad input is one
line and exit 2 before anything is written."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from gluoncv_fp16.bench import infer  # noqa: E402
from gluoncv_fp16.cli import eval as eval_cli  # noqa: E402
from gluoncv_fp16.cli import export as export_cli  # noqa: E402
from gluoncv_fp16.data.synthetic import SHAPE_CLASSES  # noqa: E402
from gluoncv_fp16.deploy.onnx_int8 import (AGREEMENT, PREDICTION_LAYER,  # noqa: E402
                                           compare_int8, int8_path)
from gluoncv_fp16.deploy.onnx_runtime import load_onnx  # noqa: E402
from gluoncv_fp16.model_zoo import get_model  # noqa: E402
from gluoncv_fp16.train.checkpoint import save_checkpoint  # noqa: E402

NAME = 'yolo3_mobilenet0.25_custom'
SIDE = 96

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning',
                                        'ignore::RuntimeWarning', 'ignore::DeprecationWarning')


def _checkpoint(path, config):
    """A mobilenet0.25 detector with He-initialised weights (untrained scores spread out)."""
    mx.random.seed(0)
    net = get_model(NAME, classes=list(SHAPE_CLASSES), pretrained_base=False)
    net.initialize(mx.init.MSRAPrelu(factor_type='in', slope=0.0))
    net(mx.nd.zeros((1, 3, 64, 64)))
    return save_checkpoint(str(path), net, meta={
        'model': {'name': NAME, 'classes': list(SHAPE_CLASSES)}, 'config': config})


@pytest.fixture(scope='module')
def checkpoint(synthetic_root, tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp('ckpt') / 'shapes.ckpt', {
        'data_shape': SIDE, 'dataset': 'synthetic', 'dataset_root': synthetic_root})


@pytest.fixture(scope='module')
def exported(checkpoint, tmp_path_factory):
    """(prefix, printed lines, exit code) of ``--format onnx --int8 --calib 8``."""
    prefix = str(tmp_path_factory.mktemp('int8') / 'shapes')
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = export_cli.main([checkpoint, '--format', 'onnx', '--int8', '--calib', '8',
                                '--out', prefix])
    return prefix, out.getvalue().splitlines(), code


def test_int8_export_runs_in_onnx_runtime_and_agrees_with_fp32(exported):
    prefix, lines, code = exported
    assert code == 0, lines
    assert lines[0].startswith('wrote {}.onnx (float32) and {}'.format(prefix, int8_path(prefix)))
    assert '8 training images' in lines[0]
    assert lines[1].startswith('ONNX Runtime') and lines[1].endswith('PASS')
    assert lines[2].startswith('INT8 vs FP32') and lines[2].endswith('PASS')
    detector = load_onnx(int8_path(prefix))
    assert detector.precision == 'int8' and detector.dtype == 'float32'
    assert detector.classes == list(SHAPE_CLASSES) and detector.data_shape == SIDE
    ids, scores, boxes = detector(np.zeros((2, 3, SIDE, SIDE), np.float32))
    assert ids.shape == (2, 100, 1) and boxes.shape == (2, 100, 4)


def test_the_prediction_convolutions_and_decode_stay_fp32(exported):
    model = onnx.load(int8_path(exported[0]))
    nodes = list(model.graph.node)
    makers = {out: n for n in nodes for out in n.output}
    convs = [n for n in nodes if n.op_type == 'Conv']
    head = [n for n in convs if PREDICTION_LAYER in n.input[1]]
    body = [n for n in convs if PREDICTION_LAYER not in n.input[1]]
    assert len(head) == 3 and len(body) > 20

    def read_dequantized(node):
        return any(makers.get(t) is not None and makers[t].op_type == 'DequantizeLinear'
                   for t in node.input[:2])
    assert all(read_dequantized(n) for n in body)
    assert not any(read_dequantized(n) for n in head)
    assert not any(n.op_type == 'QuantizeLinear' and 'yolooutput' in n.input[0] for n in nodes)


def test_agreement_check_fails_when_the_scores_collapse():
    rng = np.random.RandomState(0)
    boxes = np.sort(rng.uniform(0, SIDE, (4, 100, 4)), axis=2).astype(np.float32)
    boxes[..., 2:] = boxes[..., :2] + 20
    scores = np.sort(rng.uniform(0.01, 0.9, (4, 100, 1)), axis=1)[:, ::-1].astype(np.float32)
    ids = rng.randint(0, 3, (4, 100, 1)).astype(np.float32)
    same = compare_int8((ids, scores, boxes), (ids, scores + 0.05, boxes + 1))
    assert same.ok and same.found == same.drawn > 0 and same.extra == 0
    collapsed = compare_int8((ids, scores, boxes), (ids, np.full_like(scores, 0.25), boxes))
    assert not collapsed.ok and collapsed.found == 0
    assert 'FAIL' in str(collapsed) and 'INT8 loses too much' in str(collapsed)
    assert '|score diff| <= {:g}'.format(AGREEMENT['score']) in str(collapsed)


def test_eval_reports_int8_map_beside_fp32(exported, synthetic_root, tmp_path, capsys):
    prefix = exported[0]
    out = str(tmp_path / 'eval')
    assert eval_cli.main([prefix + '.onnx', int8_path(prefix), '--dataset', 'synthetic',
                          '--dataset-root', synthetic_root, '--out', out,
                          '--no-progress']) == 0
    text = capsys.readouterr().out
    assert 'AP float32 | AP int8 | int8 - float32' in text
    with open(os.path.join(out, 'summary.json')) as f:
        results = json.load(f)['results']
    assert set(results) == {'float32', 'int8'}
    mean = [row for row in text.splitlines() if row.startswith('mAP |')][0].split(' | ')
    assert float(mean[3]) == pytest.approx(results['int8']['map'] - results['float32']['map'],
                                           abs=1e-4)


def test_benchmark_prints_int8_as_a_ratio_of_fp32(exported, capsys):
    prefix = exported[0]
    assert infer.main([prefix + '.onnx', int8_path(prefix), '--threads', '1', '--batch', '2',
                       '--rounds', '2', '--warmup', '0']) == 0
    text = capsys.readouterr().out
    assert 'flags ' in text and 'load average before' in text
    row = [line for line in text.splitlines() if line.startswith('threads 1 batch 2')][0]
    assert 'float32 ' in row and 'int8 ' in row and 'of float32' in row


@pytest.mark.parametrize('argv, message', [
    (['--int8'], '--int8 writes an ONNX model; add --format onnx'),
    (['--format', 'onnx', '--int8', '--dtype', 'float16'], 'drop --dtype float16'),
    (['--format', 'onnx', '--int8', '--calib', '0'], '--calib must be a positive number'),
    (['--format', 'onnx', '--int8', '--calib-method', 'kl'], "--calib-method 'kl': choose one of"),
    (['--format', 'onnx', '--int8', '--calib-dir', 'EMPTY'], 'no calibration images'),
    (['--format', 'onnx', '--int8', 'NODATA'], 'no calibration images'),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(checkpoint, tmp_path, capsys, argv,
                                                         message):
    empty = tmp_path / 'empty'
    empty.mkdir()
    model = checkpoint
    if 'NODATA' in argv:
        argv = [a for a in argv if a != 'NODATA']
        model = _checkpoint(tmp_path / 'nodata.ckpt', {'data_shape': SIDE})
    argv = [str(empty) if a == 'EMPTY' else a for a in argv]
    out = tmp_path / 'out'
    assert export_cli.main([model, '--out', str(out / 'm')] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error:') and message in err and '\n' not in err
    assert not out.exists()


def test_benchmark_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert infer.main([str(tmp_path / 'none.onnx')]) == 2
    assert infer.main([str(tmp_path / 'none.onnx'), '--threads', '0']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and 'no ONNX model' in err[0] and '--threads' in err[1]
