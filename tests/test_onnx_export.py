"""ONNX export: ONNX Runtime returns MXNet's detections after per-class NMS.

Needs onnx 1.15 and onnxruntime 1.17 (setup.py's `onnx` / `test` extras; see
docs/export_demo.md for why onnxruntime is installed with --no-deps).
"""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

from gluoncv_fp16.cli import export as export_cli
from gluoncv_fp16.deploy.onnx_check import (CheckResult, compare_detections,
                                            default_tolerance)
from gluoncv_fp16.deploy.onnx_export import export_onnx
from gluoncv_fp16.deploy.onnx_nms import append_postprocessing
from gluoncv_fp16.deploy.onnx_runtime import load_onnx
from gluoncv_fp16.train.checkpoint import load_model, save_checkpoint
from helpers import MODEL_NAME, SHAPE_CLASSES as CLASSES, random_detector

SIDE = 96

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A checkpoint that records its training data shape (96 px)."""
    path = str(tmp_path_factory.mktemp('ckpt') / 'model.ckpt')
    mx.random.seed(0)  # module fixtures run before the per-test seeding of conftest
    return save_checkpoint(path, random_detector(), meta={
        'model': {'name': MODEL_NAME, 'classes': CLASSES}, 'config': {'data_shape': SIDE}})


@pytest.fixture(scope='module')
def exports(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp('onnx')
    return {dtype: export_onnx(checkpoint, str(root / dtype), dtype=dtype)
            for dtype in ('float32', 'float16')}


def images(count=3, seed=7):
    return np.random.RandomState(seed).uniform(-2, 2, (count, 3, SIDE, SIDE)).astype(np.float32)


def test_the_file_has_gluoncvs_interface_and_records_the_checkpoint(exports):
    model = onnx.load(exports['float32'].path)
    assert [i.name for i in model.graph.input] == ['data']
    assert [o.name for o in model.graph.output] == ['ids', 'scores', 'boxes']
    detector = load_onnx(exports['float32'].path)
    assert detector.classes == CLASSES and detector.data_shape == SIDE
    assert detector.mean == (0.485, 0.456, 0.406)
    assert detector.metadata['post_nms'] == 100 and detector.metadata['nms_topk'] == 400


@pytest.mark.parametrize('dtype', ['float32', 'float16'])
def test_the_export_checked_itself_and_passed(exports, dtype):
    check = exports[dtype].check
    assert check.ok and check.matched > 0.95 * check.mxnet and check.mxnet > 0
    if dtype == 'float32':
        assert check.same_rows and check.borderline == 0


def test_fp32_onnx_detections_equal_mxnets_after_nms_on_a_new_batch(exports, checkpoint):
    x = images()
    got = load_onnx(exports['float32'].path)(x)  # batch 3: the batch size is dynamic
    net = load_model(checkpoint)
    with autograd.predict_mode():
        want = [a.asnumpy() for a in net(mx.nd.array(x))]
    assert [a.shape for a in got] == [(3, 100, 1), (3, 100, 1), (3, 100, 4)]
    assert (want[0] >= 0).sum() > 100, 'degenerate test: few detections'
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    np.testing.assert_allclose(got[2], want[2], atol=1e-3)


def test_fp16_onnx_takes_fp16_and_returns_fp32(exports, checkpoint):
    detector = load_onnx(exports['float16'].path)
    assert detector.session.get_inputs()[0].type == 'tensor(float16)'
    got = detector(images(2))
    assert [a.dtype for a in got] == [np.float32] * 3
    net = load_model(checkpoint, dtype='float16')
    with autograd.predict_mode():
        want = [a.asnumpy() for a in net(mx.nd.array(images(2), dtype='float16'))]
    result = CheckResult(['CPUExecutionProvider'], 2, default_tolerance('float16', SIDE))
    for i in range(2):
        compare_detections([w[i] for w in want], [g[i] for g in got], result.tolerance, result)
    assert result.ok and result.matched >= 0.95 * result.mxnet, str(result)


def _random_candidates(rng, batch, n, classes):
    centre = rng.uniform(0, 60, (batch, n, 2))
    size = rng.uniform(4, 30, (batch, n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    scores = rng.uniform(0, 1, (batch, n, 1)) ** 2  # some below the 0.01 valid threshold
    ids = rng.randint(0, classes, (batch, n, 1)).astype(np.float32)
    return ids, scores.astype(np.float32), boxes.astype(np.float32)


def _nms_graph(n, classes, topk, post_nms):
    from onnx import TensorProto, helper
    graph = helper.make_graph([], 'nms', [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ['b', n, width])
        for name, width in (('i', 1), ('s', 1), ('x', 4))], [])
    append_postprocessing(graph, ['i', 's', 'x'], n, classes, nms_thresh=0.45,
                          nms_topk=topk, post_nms=post_nms)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])


@pytest.mark.parametrize('n, classes, topk, post_nms', [
    (300, 3, 400, 100),  # GluonCV's defaults, fewer candidates than topk
    (900, 4, 400, 100),  # topk cuts
    (60, 2, 400, 100),   # fewer candidates than post_nms rows (MXNet's slice would fail)
    (500, 3, 50, 100),   # topk < post_nms: MXNet pads the rows with -1
    (500, 5, -1, -1),    # no limits
])
def test_appended_nms_is_gluoncvs_box_nms(n, classes, topk, post_nms):
    """The ONNX post-processing against MXNet's box_nms call in GluonCV's YOLOV3."""
    session = _nms_graph(n, classes, topk, post_nms)
    rng = np.random.RandomState(n + classes)
    ids, scores, boxes = _random_candidates(rng, 2, n, classes)
    got = session.run(None, {'i': ids, 's': scores, 'x': boxes})
    result = mx.nd.contrib.box_nms(mx.nd.array(np.concatenate([ids, scores, boxes], -1)),
                                   overlap_thresh=0.45, valid_thresh=0.01, topk=topk, id_index=0,
                                   score_index=1, coord_start=2, force_suppress=False)
    if post_nms > 0:
        result = result.slice_axis(axis=1, begin=0, end=min(post_nms, n))
    want = result.asnumpy()
    assert (want[:, :, 0] >= 0).sum() > 20, 'degenerate case'
    np.testing.assert_array_equal(got[0][..., 0], want[..., 0])
    np.testing.assert_array_equal(got[1][..., 0], want[..., 1])
    np.testing.assert_array_equal(got[2], want[..., 2:])


def test_the_comparison_fails_when_a_box_moves():
    ids = np.array([[0.], [1.], [-1.]], np.float32)
    scores = np.array([[0.9], [0.8], [-1.]], np.float32)
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [-1, -1, -1, -1]], np.float32)
    tol = default_tolerance('float32', SIDE)
    same = CheckResult(['x'], 1, tol)
    compare_detections((ids, scores, boxes), (ids, scores, boxes.copy()), tol, same)
    assert same.ok and same.matched == 2
    moved = boxes.copy()
    moved[1, 0] += 1.0
    bad = CheckResult(['x'], 1, tol)
    compare_detections((ids, scores, boxes), (ids, scores, moved), tol, bad)
    assert not bad.ok and bad.unmatched == 2 and 'FAIL' in str(bad)


def test_export_script_writes_and_checks(checkpoint, tmp_path, capsys):
    code = export_cli.main([checkpoint, '--format', 'onnx', '--out',
                                   str(tmp_path / 'm')])
    out = capsys.readouterr().out
    assert code == 0 and os.path.isfile(str(tmp_path / 'm.onnx'))
    assert '96 px' in out and 'PASS' in out


@pytest.mark.parametrize('argv, message', [
    (['missing.ckpt'], 'No checkpoint'),
    (['CKPT', '--network', 'yolo3_darknet53_voc'], "trained as 'yolo3_mobilenet0.25_custom'"),
])
def test_export_script_bad_input_is_one_line(checkpoint, tmp_path, capsys, argv, message):
    argv = [checkpoint if a == 'CKPT' else a for a in argv]
    code = export_cli.main(argv + ['--format', 'onnx', '--out', str(tmp_path / 'm')])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
