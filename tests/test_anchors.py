"""Anchors: BPR on hand-made boxes, --auto-anchor on boxes COCO's anchors fit badly, and
the fitted anchors going everywhere the model goes: checkpoint, resume (bit-identical),
eval, demo, the MXNet and ONNX exports, and a stock GluonCV rebuild."""
import json
import os

import cv2
import gluoncv
import mxnet as mx
import numpy as np
import pytest
from gluoncv.model_zoo.yolo.yolo3 import custom_yolov3
from mxnet import autograd

from gluoncv_fp16.cli import train as train_cli
from gluoncv_fp16.checkpoint import load_model, read_checkpoint, read_source, save_checkpoint
from gluoncv_fp16.data.anchors import (as_pairs, box_sizes_at, choose_anchors, fit_anchors,
                                       score_anchors)
from gluoncv_fp16.data.report import Record
from gluoncv_fp16.deploy.evaluate import load_models
from gluoncv_fp16.deploy.export import export_detector
from gluoncv_fp16.deploy.predict import load_detector
from gluoncv_fp16.model_zoo import get_model
from gluoncv_fp16.model_zoo.anchors import GLUONCV_ANCHORS, anchors_in_params, network_anchors
from gluoncv_fp16.model_zoo.params import named_params
from gluoncv_fp16.train.build import run_training
from gluoncv_fp16.train.checkpoint import load_run_state

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

NAME = 'yolo3_mobilenet0.25_custom'
COCO = [list(map(float, g)) for g in GLUONCV_ANCHORS]
PREFIX = 'yolo3_mobilenet0.25_yolo'


def thin_tall_sizes(count=200, seed=0):
    """Box (width, height) at 64 px that COCO's anchors fit badly: 2-5 px wide, 30-60 high."""
    rs = np.random.RandomState(seed)
    return np.stack([rs.uniform(2, 5, count), rs.uniform(30, 60, count)], axis=1)


# ----- the math ----------------------------------------------------------------------------
def test_bpr_and_anchors_above_threshold_on_hand_made_boxes():
    anchors = [[10, 10, 20, 20, 40, 40]] * 3  # nine anchors, three shapes
    sizes = np.array([[10, 10],    # equal to an anchor: fit 1, three anchors of each shape
                      [39, 10],    # width 3.9x the 10x10 anchor: fits (ratio < 4)
                      [41, 10],    # 4.1x wider than 10x10, 2.05x lower than 20x20 ...
                      [200, 2],    # fits none
                      [0, 5]])     # no area: ignored
    score = score_anchors(anchors, sizes, threshold=4.0)
    # [41, 10]: 10x10 -> min(10/41, 1) = 0.244 < 0.25; 20x20 -> min(20/41, 10/20) = 0.488
    assert score.bpr == pytest.approx(3 / 4)
    # fits above 1/4: [10,10]: 10x10 (1), 20x20 (0.5), 40x40 (0.25: not above) -> 2 shapes
    # x 3 anchors = 6; [39,10]: 10x10 (0.256), 20x20 (0.5), 40x40 (0.25) -> 6; [41,10]: 20x20
    # (0.488), 40x40 (0.25) -> 3; [200,2]: 0
    assert score.above == pytest.approx((6 + 6 + 3 + 0) / 4)
    assert score.fitness == pytest.approx((1 + 0.5 + 20 / 41 + 0) / 4)  # best fit per box
    assert score_anchors(anchors, sizes, threshold=2.0).bpr == pytest.approx(1 / 4)


def test_box_sizes_are_scaled_to_the_data_shape_side_by_side():
    records = [Record('a', 200, 100, np.array([[0, 0, 50, 50], [10, 20, 30, 100]]),
                       np.array([0, 0])),
               Record('b', None, None, np.array([[0, 0, 5, 5]]), np.array([0])),  # unknown
               Record('c', 64, 64, np.zeros((0, 4)), np.zeros(0, int))]          # background
    np.testing.assert_allclose(box_sizes_at(records, 64), [[16, 32], [6.4, 51.2]])


def test_auto_anchor_raises_bpr_on_thin_tall_boxes_deterministically():
    sizes = thin_tall_sizes()
    choice = choose_anchors(COCO, sizes, refit=True, seed=3)
    assert choice.before.bpr < 0.9 and choice.fitted
    assert choice.after.bpr > choice.before.bpr and choice.after.bpr >= 0.98
    pairs = as_pairs(choice.anchors)
    areas = pairs[:, 0] * pairs[:, 1]
    assert pairs.shape == (9, 2) and (np.diff(areas) >= 0).all()  # 3 scales, small first
    assert choose_anchors(COCO, sizes, refit=True, seed=3) == choice       # seeded
    assert fit_anchors(sizes, seed=4) != choice.anchors                    # the seed matters
    many = thin_tall_sizes(6000, seed=1)  # more than MAX_FIT_BOXES: fitted on a sample
    assert score_anchors(fit_anchors(many, generations=50), many).bpr >= 0.98
    # without the flag, or when COCO's fit, the anchors stay
    assert choose_anchors(COCO, sizes, refit=False).anchors == COCO
    square = np.full((50, 2), 30.0) * np.random.RandomState(1).uniform(0.8, 1.2, (50, 1))
    kept = choose_anchors(COCO, square, refit=True)
    assert not kept.fitted and kept.after is None and kept.anchors == COCO


def test_too_few_shapes_or_a_bpr_at_target_keep_the_networks_anchors():
    few = choose_anchors(COCO, thin_tall_sizes(5), refit=True)
    assert not few.fitted and few.after is None and few.anchors == COCO
    perfect = [[3.0, 40.0] * 3] * 3
    assert choose_anchors(perfect, np.array([[3.0, 40.0]] * 30), refit=True).anchors == perfect


# ----- networks built with anchors ----------------------------------------------------------
def test_get_model_builds_with_anchors_before_and_after_initialise():
    anchors = fit_anchors(thin_tall_sizes(), seed=0)
    net = get_model(NAME, classes=['pole'], pretrained_base=False, anchors=anchors)
    assert network_anchors(net) == anchors
    net.initialize()
    assert network_anchors(net) == anchors
    # the largest group goes to the coarsest output (stride 32), as in GluonCV
    np.testing.assert_allclose(net.yolo_outputs[0].anchors.data().asnumpy().ravel(),
                               anchors[2], rtol=1e-6)
    assert network_anchors(get_model(NAME, classes=['pole'], pretrained_base=False)) == COCO
    with pytest.raises(ValueError, match='3 lists'):
        get_model(NAME, classes=['pole'], pretrained_base=False, anchors=[[1, 2, 3, 4]])
    with pytest.raises(ValueError, match='positive'):
        get_model(NAME, classes=['pole'], pretrained_base=False,
                  anchors=[[1, 2, 3, 4, 5, -6]] * 3)


# ----- a run with --auto-anchor on thin, tall boxes ------------------------------------------
def write_pole_set(root, count=8):
    """A YOLO txt set of 96 px noise images with 1-2 thin tall 'pole' boxes each."""
    rs = np.random.RandomState(7)
    for split, n in (('train', count), ('val', 4)):
        os.makedirs(os.path.join(root, 'images', split))
        os.makedirs(os.path.join(root, 'labels', split))
        for k in range(n):
            img = rs.randint(0, 255, (96, 96, 3)).astype(np.uint8)
            lines = []
            for _ in range(1 + k % 2):
                w, h = rs.uniform(3.1, 3.7), rs.uniform(60, 90)  # 2-2.5 x 40-60 at 64 px
                cx, cy = rs.uniform(10, 86), rs.uniform(h / 2 + 1, 95 - h / 2)
                img[int(cy - h / 2):int(cy + h / 2), int(cx - w / 2):int(cx + w / 2)] = 255
                lines.append('0 {} {} {} {}\n'.format(cx / 96, cy / 96, w / 96, h / 96))
            cv2.imwrite(os.path.join(root, 'images', split, '{}.png'.format(k)), img)
            with open(os.path.join(root, 'labels', split, '{}.txt'.format(k)), 'w') as f:
                f.writelines(lines)
    path = os.path.join(root, 'data.yaml')
    with open(path, 'w') as f:
        f.write('path: .\ntrain: images/train\nval: images/val\nnames: [pole]\n')
    return path


def argv_for(data_yaml, out, *extra):
    return ['--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '2',
            '--dataset', 'yolo', '--data', data_yaml, '-j', '0', '--gpus', '',
            '--save-prefix', str(out) + os.sep, '--no-random-shape', '--no-plots',
            '--log-interval', '100', '--no-self-check', '--seed', '5', '--lr', '0.002',
            '--no-pretrained-base', *extra]


def train(argv):
    return run_training(train_cli.make_config(train_cli.parse_args(argv)))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A straight 2-epoch --auto-anchor run, and the same run stopped after epoch 1 and
    resumed (with logs of each)."""
    import logging
    root = tmp_path_factory.mktemp('anchors')
    data = write_pole_set(str(root / 'poles'))
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())
    handler = Keep(level=logging.INFO)
    logger = logging.getLogger('gluoncv_fp16')
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    from gluoncv_fp16.data import loader
    target_anchors = []

    def make_train_loader(dataset, net, *args, **kwargs):  # the workers' target generator
        target_anchors.append(network_anchors(net))
        return make(dataset, net, *args, **kwargs)
    make = loader.make_train_loader
    try:
        logs = {}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(loader, 'make_train_loader', make_train_loader)
            straight = train(argv_for(data, root / 'straight', '--auto-anchor', '--epochs',
                                      '2'))
        logs['straight'], records[:] = list(records), []
        train(argv_for(data, root / 'resumed', '--auto-anchor', '--epochs', '1'))
        logs['first'], records[:] = list(records), []
        train(argv_for(data, root / 'resumed', '--auto-anchor', '--epochs', '2',
                       '--resume', 'auto'))
        logs['resumed'] = list(records)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return {'root': root, 'data': data, 'net': straight.net, 'logs': logs,
            'target_anchors': target_anchors,
            'straight': str(root / 'straight' / PREFIX), 'resumed': str(root / 'resumed' / PREFIX)}


def test_the_run_logs_bpr_and_fits_anchors_that_score_higher(runs):
    log = '\n'.join(runs['logs']['straight'])
    assert "GluonCV's (COCO's) anchors have BPR" in log, log[-3000:]
    assert '--auto-anchor: fitted anchors have BPR 1.0000' in log and 'using them' in log
    with open(runs['straight'] + '_anchors.json') as f:
        record = json.load(f)
    assert record['source'] == '--auto-anchor' and record['bpr'] == 1.0
    assert record['anchors'] != COCO and record['network'] == NAME
    assert record['classes'] == ['pole']


def test_checkpoint_params_and_json_hold_the_fitted_anchors(runs):
    with open(runs['straight'] + '_anchors.json') as f:
        anchors = json.load(f)['anchors']
    assert network_anchors(runs['net']) == anchors
    assert runs['target_anchors'] == [anchors]  # the data workers' targets use them too
    ckpt = read_checkpoint(runs['straight'] + '_last.ckpt')
    assert ckpt.meta['model']['anchors'] == anchors
    assert anchors_in_params(ckpt.params) == anchors
    assert anchors_in_params(read_checkpoint(runs['straight'] + '_best.params').params) == \
        anchors


def test_resume_keeps_the_checkpoints_anchors_and_is_bit_identical(runs):
    assert any("resuming, so the checkpoint's anchors are kept" in m
               for m in runs['logs']['resumed']), runs['logs']['resumed'][-20:]
    assert not any('fitted anchors' in m for m in runs['logs']['resumed'])
    a = load_run_state(runs['straight'] + '_last.ckpt')
    b = load_run_state(runs['resumed'] + '_last.ckpt')
    assert a.meta['iteration'] == b.meta['iteration'] > 0
    assert a.meta['model'] == b.meta['model']
    for kind, left, right in (('weights', a.weights, b.weights),
                              ('arrays', a.arrays(), b.arrays())):
        assert set(left) == set(right)
        differing = [k for k in left if not np.array_equal(left[k].asnumpy(),
                                                           right[k].asnumpy())]
        assert not differing, (kind, differing[:5])


def inputs(side=64, seed=2):
    return mx.nd.array(np.random.RandomState(seed).uniform(-2, 2, (2, 3, side, side)))


def outputs(block, x):
    with autograd.predict_mode():
        return [a.asnumpy() for a in block(x)]


def assert_same(got, want):
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_eval_demo_and_export_rebuild_with_the_checkpoints_anchors(runs, tmp_path):
    ckpt = runs['straight'] + '_last.ckpt'
    anchors = read_checkpoint(ckpt).meta['model']['anchors']
    x = inputs()
    net = runs['net']
    net.hybridize()  # the loop's cached graph is the training call
    want = outputs(net, x)
    assert read_source(ckpt).anchors == anchors
    loaded = load_model(ckpt)
    assert network_anchors(loaded) == anchors
    assert_same(outputs(loaded, x), want)
    detectors, _ = load_models(ckpt)                              # eval
    assert network_anchors(detectors['float32'].block) == anchors
    detector = load_detector(checkpoint=ckpt)                     # demo
    assert network_anchors(detector.block) == anchors
    files = export_detector(ckpt, str(tmp_path / 'm'), 'float32', data_shape=64)
    with open(files.meta) as f:
        assert json.load(f)['model']['anchors'] == anchors
    exported = mx.gluon.SymbolBlock.imports(files.symbol, ['data'], files.params)
    assert_same(outputs(exported, x), want)


def test_a_stock_gluoncv_rebuild_gives_the_same_outputs(runs):
    """What docs/your_data.md tells GluonCV users: the .params file holds the anchors, so
    the named *_custom network loads it as it is; the explicit rebuild is GluonCV's
    general builder with the anchors of <prefix>_anchors.json."""
    params = runs['straight'] + '_best.params'
    with open(runs['straight'] + '_anchors.json') as f:
        record = json.load(f)
    x = inputs(seed=4)
    want = outputs(load_model(params, network=NAME, classes=['pole']), x)
    named = gluoncv.model_zoo.get_model(NAME, classes=['pole'], pretrained_base=False)
    named.load_parameters(params)
    explicit = custom_yolov3('mobilenet0.25', [256, 128, 128], record['anchors'], [8, 16, 32],
                             ['pole'], '', pretrained_base=False)
    explicit.load_parameters(params)
    for stock in (named, explicit):
        assert network_anchors(stock) == record['anchors']
        assert_same(outputs(stock, x), want)
    assert "custom_yolov3('mobilenet0.25', [256, 128, 128], {}".format(record['anchors']) in \
        record['gluoncv_rebuild'] and params in record['gluoncv_rebuild']


def test_onnx_export_decodes_with_the_checkpoints_anchors(tmp_path):
    """ONNX: a He-initialised detector (untrained scores that differ) with fitted anchors;
    the ONNX boxes equal MXNet's, which differ from the same weights with COCO's anchors."""
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    from gluoncv_fp16.deploy.onnx_export import export_onnx
    from gluoncv_fp16.deploy.onnx_runtime import load_onnx
    anchors = fit_anchors(thin_tall_sizes(), seed=0)
    net = get_model(NAME, classes=['pole', 'post'], pretrained_base=False, anchors=anchors)
    net.initialize(mx.init.MSRAPrelu(factor_type='in', slope=0.0))
    x = inputs(96)
    want = outputs(net, x)
    ckpt = save_checkpoint(str(tmp_path / 'm.ckpt'), net, meta={
        'model': {'name': NAME, 'classes': ['pole', 'post'], 'anchors': anchors},
        'config': {'data_shape': 96}})
    got = load_onnx(export_onnx(ckpt, str(tmp_path / 'onnx')).path)(x.asnumpy())
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[2], want[2], atol=1e-3)
    coco = get_model(NAME, classes=['pole', 'post'], pretrained_base=False)
    coco.initialize()
    coco(x)
    fitted = named_params(net)
    for name, param in named_params(coco).items():
        if not name.endswith('.anchors'):
            param.set_data(fitted[name].data())
    assert np.abs(outputs(coco, x)[2] - want[2]).max() > 1.0


@pytest.mark.parametrize('value', ['1', '0.5', 'nan', 'inf'])
def test_a_bad_anchor_threshold_is_one_line_and_exit_2(tmp_path, capsys, value):
    data = write_pole_set(str(tmp_path / 'poles'), count=2)
    out = tmp_path / 'out'
    assert train_cli.main(argv_for(data, out, '--anchor-threshold', value)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--anchor-threshold must be a ratio above 1' in err[0], err
    assert not out.exists()
