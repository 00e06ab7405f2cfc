"""The eval command (gluoncv_fp16.cli.eval, scripts/eval.py) and deploy.evaluate: FP32
and FP16 mAP of one checkpoint, PR curves, COCO-format detections, pycocotools metrics,
one-line errors."""
import csv
import json

import mxnet as mx
import numpy as np
import pytest

from gluoncv_fp16.cli import eval as eval_cli
from gluoncv_fp16.data.datasets import build_datasets
from gluoncv_fp16.data.synthetic import SHAPE_CLASSES
from gluoncv_fp16.deploy.detection_record import DetectionRecord
from gluoncv_fp16.deploy.evaluate import (COCO_STAT_NAMES, coco_stats, evaluate, load_models,
                                          per_class_ap)
from gluoncv_fp16.train.checkpoint import save_checkpoint
from helpers import CLASSES as FORMAT_CLASSES
from helpers import random_detector, write_cvat, write_yolo

NAME = 'yolo3_mobilenet0.25_custom'
SIDE = 96

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


def eval_main(argv):
    return eval_cli.main(argv)


@pytest.fixture(scope='module')
def checkpoint(synthetic_root, tmp_path_factory):
    """A checkpoint recording a synthetic-data run at 96 px (as training writes them)."""
    path = str(tmp_path_factory.mktemp('ckpt') / 'shapes.ckpt')
    mx.random.seed(0)  # module fixtures run before the per-test seeding of conftest
    net = random_detector(NAME, list(SHAPE_CLASSES))
    return save_checkpoint(path, net, meta={
        'model': {'name': NAME, 'classes': list(SHAPE_CLASSES)},
        'config': {'data_shape': SIDE, 'dataset': 'synthetic', 'dataset_root': synthetic_root}})


def test_map_equals_gluoncv_voc07_metric(checkpoint, synthetic_root):
    """eval.py's AP per class, and training's validation, equal GluonCV's VOC07MApMetric."""
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric as GluonCVMetric
    from gluoncv_fp16.data.loader import make_val_loader
    from gluoncv_fp16.data.voc_map import VOC07MApMetric
    from gluoncv_fp16.train.evaluation import evaluate as train_evaluate
    from gluoncv_fp16.train.evaluation import make_metric
    detectors, info = load_models(checkpoint)
    assert info.data_shape == SIDE and info.classes == list(SHAPE_CLASSES)
    _, val_set, _ = build_datasets('synthetic', root=synthetic_root)
    ours, _ = per_class_ap(evaluate(detectors, val_set, info, progress=False)['float32'])
    training = make_metric('synthetic', val_set, info.classes, SIDE, 'unused')
    assert isinstance(training, VOC07MApMetric)  # the one implementation
    results = {}
    for name, metric in (('training', training),
                         ('gluoncv', GluonCVMetric(iou_thresh=0.5, class_names=info.classes))):
        results[name] = train_evaluate(detectors['float32'].block,
                                       make_val_loader(val_set, 4, SIDE), [mx.cpu()], metric)
    names, theirs = results['gluoncv']
    assert results['training'][0] == names
    assert max(theirs[:-1]) > 0, 'degenerate test: every AP is 0'
    np.testing.assert_allclose(ours, theirs[:-1], atol=1e-9)
    np.testing.assert_allclose(results['training'][1], theirs, atol=1e-9)


def test_map_equals_gluoncv_on_random_boxes():
    """Difficult boxes, classes without ground truth or without detections, padding rows."""
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric as GluonCVMetric
    from gluoncv_fp16.data.voc_map import VOC07MApMetric
    rng = np.random.RandomState(0)
    classes = ['a', 'b', 'c', 'd', 'e']  # 'e' never appears; 'd' only in detections
    ours, theirs = VOC07MApMetric(0.5, classes), GluonCVMetric(0.5, classes)
    for _ in range(6):
        gt_xy = rng.uniform(0, 60, (4, 8, 2))
        gt = np.concatenate([gt_xy, gt_xy + rng.uniform(10, 40, (4, 8, 2))], axis=-1)
        gt_ids = rng.randint(-1, 3, (4, 8, 1)).astype(np.float32)  # -1: padding
        hard = (rng.uniform(size=(4, 8, 1)) < 0.2).astype(np.float32)
        det = gt[:, rng.permutation(8)] + rng.normal(0, 4, (4, 8, 4))
        det_ids = rng.randint(-1, 4, (4, 8, 1)).astype(np.float32)
        scores = rng.uniform(size=(4, 8, 1)).astype(np.float32)
        for metric in (ours, theirs):
            metric.update([mx.nd.array(det)], [mx.nd.array(det_ids)], [mx.nd.array(scores)],
                          [mx.nd.array(gt)], [mx.nd.array(gt_ids)], [mx.nd.array(hard)])
    (names_a, values_a), (names_b, values_b) = ours.get(), theirs.get()
    assert names_a == names_b
    assert np.isnan(values_a[3]) and np.isnan(values_a[4])
    np.testing.assert_allclose(values_a, values_b, atol=1e-9)


def test_eval_script_reports_fp32_and_fp16_of_one_checkpoint(checkpoint, tmp_path, capsys):
    out = tmp_path / 'ev'
    assert eval_main([checkpoint, '--dtype', 'float32,float16', '--out', str(out),
                      '--no-progress']) == 0
    text = capsys.readouterr().out
    assert 'on synthetic (8 images, 96 px)' in text
    assert 'class | AP float32 | AP float16 | float16 - float32' in text
    with open(str(out / 'summary.json')) as f:
        summary = json.load(f)
    fp32, fp16 = summary['results']['float32'], summary['results']['float16']
    mean_row = [line for line in text.splitlines() if line.startswith('mAP |')][0]
    assert '{:.4f}'.format(fp32['map']) in mean_row and '{:.4f}'.format(fp16['map']) in mean_row
    assert abs(fp16['map'] - fp32['map']) < 0.05  # same weights, FP16 roundoff only
    for name in SHAPE_CLASSES:
        assert (out / 'pr_{}.png'.format(name)).stat().st_size > 1000
    with open(fp32['json']) as f:
        detections = json.load(f)
    assert detections and set(detections[0]) == {'image_id', 'category_id', 'score', 'bbox'}
    boxes = np.array([d['bbox'] for d in detections])
    assert (boxes[:, 0] + boxes[:, 2] <= 128 + 1e-3).all()  # original 128 px images
    assert {d['category_id'] for d in detections} <= {0, 1, 2}
    _assert_pictures(text, out, summary, detections)
    _assert_confusion(text, out, summary)


def _assert_confusion(text, out, summary):
    """A confusion matrix per dtype at the picture threshold: CSV = summary, PNG drawn,
    every object counted once in its row whatever the dtype."""
    objects = None
    for dtype in ('float32', 'float16'):
        found = summary['confusion'][dtype]
        assert found['threshold'] == summary['pictures'][dtype]['threshold']
        with open(str(out / 'confusion_{}.csv'.format(dtype))) as f:
            rows = list(csv.reader(f))[1:]
        assert [[int(v) for v in r[1:]] for r in rows] == found['matrix']
        assert [r[0] for r in rows] == list(SHAPE_CLASSES) + ['background']
        row_sums = [sum(r) for r in found['matrix'][:-1]]
        assert objects is None or row_sums == objects
        objects = row_sums
        assert (out / 'confusion_{}.png'.format(dtype)).stat().st_size > 1000
        assert (out / 'class_scores_{}.csv'.format(dtype)).is_file()
        assert '{} at score >= {:.3f}, IoU >= 0.5: precision | recall | F1'.format(
            dtype, found['threshold']) in text
    assert sum(objects) > 0


def _assert_pictures(text, out, summary, detections):
    """The picture check: a line per dtype, a CSV per dtype that its counts sum up."""
    for dtype in ('float32', 'float16'):
        counts = summary['pictures'][dtype]
        with open(str(out / 'pictures_{}.csv'.format(dtype))) as f:
            rows = list(csv.DictReader(f))
        assert [int(r['image_id']) for r in rows] == list(range(8))
        for row in rows:
            faults = [int(row[k]) for k in ('missed', 'extra', 'wrong_class')]
            assert row['right'] == ('0' if any(faults) else '1')
        assert counts['right'] == sum(r['right'] == '1' for r in rows)
        for kind in ('missed', 'extra', 'wrong_class'):
            assert counts[kind] == sum(int(r[kind]) > 0 for r in rows)
        assert 'images right: {} of 8 ('.format(counts['right']) in text
    # demo.py's default threshold: half the best score (the JSON rounds scores to 1e-5)
    best = max(d['score'] for d in detections)
    assert summary['pictures']['float32']['threshold'] == pytest.approx(best / 2, abs=1e-5)


def test_eval_script_picture_check_at_a_given_threshold(checkpoint, tmp_path, capsys):
    # Nothing scores 1.0: no box is drawn and every image (each has objects) misses one.
    out = tmp_path / 'ev'
    assert eval_main([checkpoint, '--thresh', '1', '--out', str(out), '--no-progress']) == 0
    assert ('float32 pictures at score >= 1.000: images right: 0 of 8 (0.0%); with a missed '
            'object 8, with an extra box 0, with a wrong class 0') in capsys.readouterr().out
    with open(str(out / 'summary.json')) as f:
        matrix = np.array(json.load(f)['confusion']['float32']['matrix'])
    assert matrix[:, :-1].sum() == 0 and matrix[:-1, -1].sum() > 0  # all missed
    with open(str(out / 'class_scores_float32.csv')) as f:
        assert all(r['precision'] == '' and r['recall'] == '0.0000'
                   for r in csv.DictReader(f))
    assert eval_main([checkpoint, '--thresh', '2']) == 2
    assert capsys.readouterr().err == 'error: --thresh must be between 0 and 1, got 2.0\n'


@pytest.fixture(scope='module')
def onnx_file(checkpoint, tmp_path_factory):
    pytest.importorskip('onnxruntime')
    from gluoncv_fp16.deploy.onnx_export import export_onnx
    return export_onnx(checkpoint, str(tmp_path_factory.mktemp('onnx') / 'm'),
                       check_images=False).path


def test_onnx_export_evaluates_like_the_checkpoint(checkpoint, onnx_file, tmp_path):
    path = onnx_file
    assert eval_main([path, '--out', str(tmp_path / 'a'), '--no-progress',
                      '--dataset', 'synthetic', '--dataset-root', _root(checkpoint)]) == 0
    assert eval_main([checkpoint, '--out', str(tmp_path / 'b'), '--no-progress']) == 0
    maps = []
    for sub in 'ab':
        with open(str(tmp_path / sub / 'summary.json')) as f:
            maps.append(json.load(f)['results']['float32']['map'])
    assert maps[0] == pytest.approx(maps[1], abs=1e-4)


def _root(checkpoint):
    from gluoncv_fp16.train.checkpoint import read_checkpoint
    return read_checkpoint(checkpoint).meta['config']['dataset_root']


def test_coco_runs_report_pycocotools_metrics(tmp_path):
    from helpers import write_coco
    root = str(tmp_path / 'coco')
    rs = np.random.RandomState(0)
    images = [rs.randint(0, 255, (60, 80, 3)).astype(np.uint8) for _ in range(3)]
    write_coco(root, 'val2017', images, [[(10, 5, 30, 20, 3)], [(0, 0, 70, 10, 7)], []])
    write_coco(root, 'train2017', images, [[(10, 5, 30, 20, 3)], [], []])
    _, val, classes = build_datasets('coco', root=root)
    ids = sorted(val.coco.getImgIds())
    perfect = DetectionRecord(classes, ids.__getitem__, val.contiguous_id_to_json.__getitem__)
    shifted = DetectionRecord(classes, ids.__getitem__, val.contiguous_id_to_json.__getitem__)
    for i in range(len(val)):
        label = val.label(i)
        real = label[label[:, 4] >= 0]
        perfect.add(i, real[:, 4], np.ones(len(real)), real[:, :4], label)
        shifted.add(i, real[:, 4], np.ones(len(real)), real[:, :4] + 6, label)
    good = coco_stats(perfect, val, str(tmp_path / 'p.json'))
    bad = coco_stats(shifted, val, str(tmp_path / 's.json'))
    assert good['AP'] == pytest.approx(1.0) and good['AP50'] == pytest.approx(1.0)
    assert bad['AP'] < 0.6


@pytest.mark.parametrize('argv, message', [
    (['missing.ckpt'], 'No checkpoint'),
    (['CKPT', '--dtype', 'bfloat16'], "--dtype 'bfloat16'"),
    (['CKPT', '--dataset', 'voc', '--dataset-root', 'ROOT'], 'VOC2007'),
    (['CKPT', '--classes', 'a,b'], 'was trained with classes'),
])
def test_bad_input_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, argv, message):
    argv = [checkpoint if a == 'CKPT' else str(tmp_path) if a == 'ROOT' else a for a in argv]
    assert eval_main(argv + ['--out', str(tmp_path / 'o'), '--no-progress']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error:') and message in err and '\n' not in err


def test_an_export_cannot_be_evaluated_in_another_dtype(onnx_file, tmp_path, capsys):
    assert eval_main([onnx_file, '--dtype', 'float16', '--out', str(tmp_path / 'o')]) == 2
    assert 'runs in float32 only' in capsys.readouterr().err


# ----- the dataset flags of training, defaulting to the checkpoint's -------------------------
def _format_set(tmp_path, kind):
    """A tiny set in `kind`'s format: ``({field: value}, argv)`` of its dataset flags."""
    if kind == 'coco-json':
        path = write_cvat(str(tmp_path / 'cvat'))
        return ({'train_json': path, 'val_json': path},
                ['--dataset', kind, '--train-json', path, '--val-json', path])
    path = write_yolo(str(tmp_path / 'yolo'))
    return {'data_yaml': path}, ['--dataset', kind, '--data', path]


@pytest.mark.parametrize('kind', ['coco-json', 'yolo'])
def test_eval_reads_the_checkpoints_dataset_flags_or_the_given_ones(tmp_path, capsys, kind):
    """A coco-json / yolo checkpoint is evaluated on the files it recorded without a flag;
    when they moved, the line says what it recorded, and the flags (training's) point to
    them: the same numbers, COCO's AP for coco-json."""
    flags, argv = _format_set(tmp_path, kind)
    net = random_detector(NAME, list(FORMAT_CLASSES))
    model = {'name': NAME, 'classes': list(FORMAT_CLASSES)}
    recorded = save_checkpoint(str(tmp_path / 'recorded.ckpt'), net, meta={
        'model': model, 'config': dict(flags, dataset=kind, data_shape=64)})
    moved = save_checkpoint(str(tmp_path / 'moved.ckpt'), net, meta={
        'model': model, 'config': dict({k: str(tmp_path / 'gone' / 'x') for k in flags},
                                       dataset=kind, data_shape=64)})
    out = {'recorded': tmp_path / 'a', 'given': tmp_path / 'b'}
    assert eval_main([recorded, '--out', str(out['recorded']), '--no-progress']) == 0
    capsys.readouterr()
    assert eval_main([moved, '--out', str(tmp_path / 'c'), '--no-progress']) == 2
    err = capsys.readouterr().err.strip()
    assert 'no such file' in err and 'the checkpoint recorded' in err and '\n' not in err
    assert eval_main([moved] + argv + ['--out', str(out['given']), '--no-progress']) == 0
    printed = capsys.readouterr().out
    summaries = {}
    for name, folder in out.items():
        with open(str(folder / 'summary.json')) as f:
            summaries[name] = json.load(f)
    for summary in summaries.values():
        assert summary['dataset'] == kind and summary['images'] == 4
        assert summary['classes'] == list(FORMAT_CLASSES) and summary['data_shape'] == 64
    # The same ground truth was read both ways: the objects per class (the confusion
    # matrix's row sums). Not the APs: this untrained net's scores nearly tie, and a
    # last-bit difference between two forward passes (oneDNN's kernels may differ by the
    # buffers' alignment) can reorder them.
    objects = {name: [sum(row) for row in summary['confusion']['float32']['matrix'][:-1]]
               for name, summary in summaries.items()}
    assert objects['recorded'] == objects['given'] and sum(objects['given']) > 0
    coco = summaries['given']['coco']
    if kind == 'coco-json':
        assert list(coco) == ['float32'] and set(coco['float32']) == set(COCO_STAT_NAMES)
        assert 0.0 <= coco['float32']['AP'] <= coco['float32']['AP50'] <= 1.0
        assert set(summaries['recorded']['coco']) == {'float32'}
        assert 'COCO float32: AP ' in printed
    else:
        assert coco == {} and 'COCO' not in printed


def test_recorded_flags_count_only_on_the_recorded_dataset(tmp_path):
    """Another --dataset takes only the flags given; a kind that reads --classes gets the
    model's classes, so its classes are the model's."""
    from gluoncv_fp16.cli.dataset_flags import checkpoint_data_config
    flags, _ = _format_set(tmp_path, 'coco-json')
    yolo = write_yolo(str(tmp_path / 'yolo'))
    recorded = dict(flags, dataset='coco-json')
    settings = eval_cli.EvalSettings(models=('m',), dataset='yolo', data_yaml=yolo)
    cfg = checkpoint_data_config(settings, recorded, FORMAT_CLASSES)
    assert (cfg.dataset, cfg.data_yaml, cfg.train_json, cfg.classes) == ('yolo', yolo, None,
                                                                         None)
    cfg = checkpoint_data_config(eval_cli.EvalSettings(models=('m',)), recorded, FORMAT_CLASSES)
    assert (cfg.dataset, cfg.train_json, cfg.val_json) == ('coco-json', flags['train_json'],
                                                          flags['val_json'])
    custom = {'dataset': 'custom', 'dataset_root': str(tmp_path), 'classes': ['x']}
    cfg = checkpoint_data_config(eval_cli.EvalSettings(models=('m',)), custom, ['a', 'b'])
    assert cfg.dataset_root == str(tmp_path) and cfg.classes == ('a', 'b')


def test_eval_declares_trainings_dataset_flags_with_no_default_of_their_own():
    from gluoncv_fp16.train.config import DATASET_FIELDS, TrainConfig
    from gluoncv_fp16.utils.options import declared_flags
    ours, theirs = dict(declared_flags(eval_cli.EvalSettings)), dict(declared_flags(TrainConfig))
    for name in DATASET_FIELDS:
        assert ours[name].names == theirs[name].names and ours[name].default is None
        assert ours[name].help.startswith(theirs[name].help) and 'default' in ours[name].help
    for name in ('dataset', 'dataset_root', 'train_json', 'val_json', 'image_root', 'data_yaml',
                 'classes'):
        assert getattr(eval_cli.EvalSettings(models=('m',)), name) is None


def test_every_kinds_model_suffix_is_a_zoo_model_and_coco_metrics_come_from_the_registry():
    """model_zoo may not import data (one layer): its dataset suffixes are checked here."""
    from gluoncv_fp16.data.registry import dataset_kind, dataset_kinds
    from gluoncv_fp16.data.voc_map import VOC07MApMetric
    from gluoncv_fp16.model_zoo.zoo import YOLO3_MODELS
    from gluoncv_fp16.train.evaluation import make_metric
    for kind in dataset_kinds():
        assert 'yolo3_mobilenet0.25_' + kind.model_suffix in YOLO3_MODELS, kind.name
    assert [k.name for k in dataset_kinds() if k.coco_metrics] == ['coco', 'coco-json']
    assert [k.name for k in dataset_kinds() if k.gluoncv_coco] == ['coco']
    assert dataset_kind('coco-json').model_suffix == 'custom'
    assert isinstance(make_metric('coco-json', None, FORMAT_CLASSES, 64, 'x'), VOC07MApMetric)


def test_a_dataset_kind_the_checkpoint_recorded_but_unknown_here_is_one_line(tmp_path):
    from gluoncv_fp16.cli.dataset_flags import checkpoint_data_config
    from gluoncv_fp16.errors import EvalError
    with pytest.raises(EvalError, match="unknown dataset 'gone'.*the checkpoint recorded"):
        checkpoint_data_config(eval_cli.EvalSettings(models=('m',)),
                               {'dataset': 'gone'}, ['a'])


def test_a_held_out_set_without_training_split_gets_the_maps_bootstrap(checkpoint, tmp_path,
                                                                        capsys):
    """--bootstrap N: per dtype the mAP's sd and 95% interval over image resamples (the
    same resamples for both dtypes, so their difference is paired); 0 turns it off. A
    VOC-layout folder with only a validation split is a valid evaluation set."""
    from gluoncv_fp16.data import generate
    held_out = generate(str(tmp_path / 'heldout'), num_train=0, num_val=6, width=128,
                        height=128, seed=9)
    out = tmp_path / 'ev'
    argv = [checkpoint, '--dataset', 'custom', '--dataset-root', held_out, '--dtype',
            'float32,float16', '--no-progress', '--out', str(out)]
    assert eval_main(argv + ['--bootstrap', '30']) == 0
    text = capsys.readouterr().out
    assert 'on custom (6 images, 96 px)' in text
    assert 'mAP over image resamples (30 draws of the 6 images, seed 0):' in text
    with open(str(out / 'summary.json')) as f:
        summary = json.load(f)
    for dtype in ('float32', 'float16'):
        found = summary['results'][dtype]['bootstrap']
        assert found['map'] == pytest.approx(summary['results'][dtype]['map'], abs=1e-12)
        assert found['resamples'] == 30 and len(found['samples']) == 30
        assert found['images'] == 6 and found['sd'] >= 0
    difference = summary['bootstrap_difference']
    assert difference['of'] == 'float16 - float32'
    assert difference['mean'] == pytest.approx(np.nanmean(
        np.subtract(summary['results']['float16']['bootstrap']['samples'],
                    summary['results']['float32']['bootstrap']['samples'])))
    assert eval_main(argv + ['--bootstrap', '0', '--dtype', 'float32']) == 0
    with open(str(out / 'summary.json')) as f:
        assert 'bootstrap' not in json.load(f)['results']['float32']
    assert 'image resamples' not in capsys.readouterr().out
    assert eval_main(argv + ['--bootstrap', '-1']) == 2
    assert '--bootstrap must be 0 (off)' in capsys.readouterr().err


def test_an_ema_runs_checkpoint_gives_the_ema_weights_it_validated(synthetic_root, tmp_path,
                                                                    capsys):
    """The run validated, chose _best by and exported its EMA weights; eval, export and
    demo of its checkpoints read those, not the raw training weights the resume needs."""
    from gluoncv_fp16.checkpoint import read_source
    from gluoncv_fp16.train.checkpoint import load_run_state
    from helpers import run_cli, small_args
    out = tmp_path / 'run'
    code, _ = run_cli(small_args(synthetic_root, out, '--epochs', '1', '--max-iters', '6',
                                 '--ema', '--ema-ramp', '2', '--no-self-check'), capsys)
    assert code == 0
    ckpt = str(out / 'yolo3_mobilenet0.25_synthetic_last.ckpt')
    state, source = load_run_state(ckpt), read_source(ckpt)
    assert source.weights_kind == 'ema' and set(source.params) == set(state.ema)
    for name, value in state.ema.items():
        np.testing.assert_array_equal(source.params[name], value.asnumpy(), err_msg=name)
    moved = [n for n, w in state.weights.items()
             if not np.array_equal(w.asnumpy(), state.ema[n].asnumpy())]
    assert moved, 'the EMA equals the training weights: the test would prove nothing'
    assert eval_main([ckpt, '--out', str(tmp_path / 'ev'), '--no-progress',
                      '--bootstrap', '0']) == 0
    assert "the EMA weights the run validated" in capsys.readouterr().out
    from gluoncv_fp16.train.pretrained import read_pretrained
    pretrained = read_pretrained(ckpt, 'mobilenet0.25')  # fine-tuning starts from them too
    assert set(pretrained.params) == set(state.ema) and 'EMA' in pretrained.origin
    for name, value in state.ema.items():
        np.testing.assert_array_equal(pretrained.params[name], value.asnumpy(), err_msg=name)
