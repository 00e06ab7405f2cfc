"""--pretrained: fine-tune weights learnt on other classes, offline.

The "pretrained" model is a locally saved `yolo3_mobilenet0.25_voc` (20 VOC classes,
random weights, saved as GluonCV saves them), fine-tuned to classes that partly overlap.
"""
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluoncv_fp16.model_zoo import PretrainedWeightsUnavailable, get_model
from gluoncv_fp16.train.checkpoint import CheckpointError, save_checkpoint, structural_params
from gluoncv_fp16.train.pretrained import load_pretrained, merge_predictions
from helpers import run_cli, small_args

NEW = ['dog', 'widget', 'cat']  # dog and cat are VOC classes, widget is not


def initialised(name, classes=None, seed=0):
    mx.random.seed(seed)
    net = get_model(name, classes=classes, pretrained_base=False)
    net.initialize(mx.init.MSRAPrelu(factor_type='in', slope=0.0))
    with autograd.predict_mode():
        net(mx.nd.zeros((1, 3, 64, 64)))
    return net


def arrays(net):
    return {k: v.asnumpy() for k, v in structural_params(net).items()}


@pytest.fixture(scope='module')
def voc_file(tmp_path_factory):
    """(path, arrays) of a locally saved *_voc model, as GluonCV's save_parameters writes."""
    net = initialised('yolo3_mobilenet0.25_voc', seed=1)
    path = str(tmp_path_factory.mktemp('voc') / 'yolo3_mobilenet0.25_voc.params')
    net.save_parameters(path)
    return path, arrays(net), list(net.classes)


def test_voc_model_fine_tuned_to_partly_overlapping_classes(voc_file):
    path, voc, voc_classes = voc_file
    net = initialised('yolo3_mobilenet0.25_custom', NEW, seed=2)
    fresh = arrays(net)
    assert load_pretrained(net, path, NEW, 'mobilenet0.25') == ['dog', 'cat']
    got = arrays(net)
    for name, value in got.items():
        if '.prediction.' not in name:
            np.testing.assert_array_equal(value, voc[name], err_msg=name)
            continue
        n_old, n_new = 5 + len(voc_classes), 5 + len(NEW)
        for anchor in range(3):
            rows = value[anchor * n_new:(anchor + 1) * n_new]
            old = voc[name][anchor * n_old:(anchor + 1) * n_old]
            np.testing.assert_array_equal(rows[:5], old[:5])  # box + objectness
            np.testing.assert_array_equal(rows[5], old[5 + voc_classes.index('dog')])
            np.testing.assert_array_equal(rows[7], old[5 + voc_classes.index('cat')])
            np.testing.assert_array_equal(rows[6], fresh[name][anchor * n_new + 6])  # widget


def test_fp16_weights_file_and_fp16_training_net(voc_file, tmp_path):
    _, voc, _ = voc_file
    half = initialised('yolo3_mobilenet0.25_voc', seed=1)
    half.cast('float16')
    path = str(tmp_path / 'half.params')
    half.save_parameters(path)
    net = initialised('yolo3_mobilenet0.25_custom', NEW)
    net.cast('float16')
    load_pretrained(net, path, NEW, 'mobilenet0.25')
    weight = net.yolo_outputs[0].prediction.weight.data()
    assert weight.dtype == np.float16
    np.testing.assert_array_equal(weight.asnumpy()[:5], voc['yolo_outputs.0.prediction.weight']
                                  [:5].astype(np.float16))


def test_published_name_uses_gluoncvs_cache(voc_file, monkeypatch):
    import gluoncv.model_zoo.model_store as model_store
    asked = []
    monkeypatch.setattr(model_store, 'get_model_file',
                        lambda name, tag=None, root=None: asked.append(name) or voc_file[0])
    net = initialised('yolo3_mobilenet0.25_custom', NEW)
    assert load_pretrained(net, 'voc', NEW, 'mobilenet0.25') == ['dog', 'cat']
    assert asked == ['yolo3_mobilenet0.25_voc']


def test_checkpoint_source_matches_classes_by_recorded_name(tmp_path):
    old = initialised('yolo3_mobilenet0.25_custom', ['cat', 'lamp'], seed=4)
    path = save_checkpoint(str(tmp_path / 'old.ckpt'), old, meta={
        'model': {'name': 'yolo3_mobilenet0.25_custom', 'classes': ['cat', 'lamp']}})
    net = initialised('yolo3_mobilenet0.25_custom', NEW)
    assert load_pretrained(net, path, NEW, 'mobilenet0.25') == ['cat']


def test_merge_predictions_moves_rows_by_name():
    old = np.arange(3 * 7, dtype=np.float32)  # 2 classes: a, b
    new = -np.ones(3 * 8, dtype=np.float32)  # 3 classes: b, c, a
    merged = merge_predictions(old, new, ['a', 'b'], ['b', 'c', 'a'])
    for anchor in range(3):
        row = merged[anchor * 8:(anchor + 1) * 8]
        src = old[anchor * 7:(anchor + 1) * 7]
        assert list(row) == list(src[:5]) + [src[6], -1, src[5]]
    assert (new == -1).all(), 'the input is not modified'


def _error(tmp_path, source, network='mobilenet0.25'):
    net = initialised('yolo3_mobilenet0.25_custom', NEW)
    before = arrays(net)
    with pytest.raises((CheckpointError, PretrainedWeightsUnavailable)) as info:
        load_pretrained(net, source, NEW, network)
    after = arrays(net)
    changed = [k for k in before if not np.array_equal(before[k], after[k], equal_nan=True)]
    assert not changed, 'nothing half-loaded: {} changed, e.g. {}: {} -> {}'.format(
        len(changed), changed[:3], before[changed[0]].ravel()[:3], after[changed[0]].ravel()[:3])
    return str(info.value)


def test_another_network_is_refused_before_anything_is_copied(tmp_path):
    other = initialised('yolo3_mobilenet1.0_voc')
    path = str(tmp_path / 'm1.params')
    other.save_parameters(path)
    assert 'same --network' in _error(tmp_path, path)


def test_non_float_arrays_and_non_params_files_are_refused(tmp_path):
    ints = str(tmp_path / 'ints.params')
    mx.nd.save(ints, {'yolo_outputs.0.anchors': mx.nd.zeros((2,), dtype='int32')})
    assert 'expected float32 or float16' in _error(tmp_path, ints)
    text = tmp_path / 'notes.params'
    text.write_text('not weights')
    assert 'neither a gluoncv_fp16 checkpoint nor an MXNet .params' in _error(tmp_path,
                                                                             str(text))


def test_unnamed_classes_of_another_count_are_refused(tmp_path):
    two = initialised('yolo3_mobilenet0.25_custom', ['a', 'b'])
    path = str(tmp_path / 'two.params')
    two.save_parameters(path)
    assert 'records no names' in _error(tmp_path, path)


def test_unpublished_weights_say_so(tmp_path):
    assert "publishes no pretrained weights for 'yolo3_mobilenet0.25_coco'" in \
        _error(tmp_path, 'coco')


def test_cli_fine_tunes_from_a_checkpoint_and_logs_the_reused_classes(tmp_path, capsys,
                                                                      synthetic_root):
    old = initialised('yolo3_mobilenet0.25_custom', ['square', 'hexagon', 'circle'])
    path = save_checkpoint(str(tmp_path / 'shapes.ckpt'), old, meta={
        'model': {'name': 'yolo3_mobilenet0.25_custom',
                  'classes': ['square', 'hexagon', 'circle']}})
    code, out = run_cli(small_args(synthetic_root, tmp_path / 'run', '--epochs', '1',
                                   '--max-iters', '1', '--pretrained', path), capsys)
    assert code == 0, out.err[-3000:]
    assert 'reused the predictions of 2 classes (circle, square); 1 start fresh (triangle)' \
        in out.out


@pytest.mark.parametrize('value, message', [
    ('missing.params', "--pretrained 'missing.params': no such file"),
    ('coco', '--pretrained coco: GluonCV publishes no weights for yolo3_mobilenet0.25_coco; '
             'give your own with --pretrained FILE'),
])
def test_cli_bad_pretrained_is_one_line(tmp_path, capsys, synthetic_root, value, message):
    code, out = run_cli(small_args(synthetic_root, tmp_path, '--epochs', '1', '--max-iters',
                                   '1', '--pretrained', value), capsys)
    assert code == 2 and message in out.err and len(out.err.strip().splitlines()) == 1
    assert 'Traceback' not in out.err
    assert not os.path.exists(str(tmp_path / 'yolo3_mobilenet0.25_synthetic_last.ckpt'))


def test_cli_pretrained_voc_reads_gluoncvs_cache(voc_file, tmp_path, capsys, synthetic_root,
                                                 monkeypatch):
    """`--pretrained voc` with GluonCV's cache lookup pointed at the local *_voc model."""
    import gluoncv.model_zoo.model_store as model_store
    monkeypatch.setattr(model_store, 'get_model_file',
                        lambda name, tag=None, root=None: voc_file[0])
    code, out = run_cli(small_args(synthetic_root, tmp_path, '--epochs', '1', '--max-iters',
                                   '1', '--pretrained', 'voc'), capsys)
    assert code == 0, out.err[-3000:]
    assert "--pretrained GluonCV's yolo3_mobilenet0.25_voc: reused the predictions of 0 " \
        "classes (none); 3 start fresh (circle, square, triangle)" in out.out
