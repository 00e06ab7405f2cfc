"""The demo command (gluoncv_fp16.cli.demo, scripts/demo.py) and deploy.predict:
detections drawn on images, clear user errors."""
import os
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluoncv_fp16.cli import demo as demo_cli
from gluoncv_fp16.data.synthetic import SHAPE_CLASSES, render_sample
from gluoncv_fp16.train.checkpoint import save_checkpoint
from gluoncv_fp16.deploy.export import export_detector
from gluoncv_fp16.deploy.predict import (Detections, Detector, PredictError,
                                         draw_detections, load_detector, read_image)
from helpers import ROOT, child_env, random_detector

SCRIPT = os.path.join(ROOT, 'scripts', 'demo.py')
NAME = 'yolo3_mobilenet0.25_custom'
SIDE = 96

pytestmark = pytest.mark.filterwarnings("ignore:Cannot decide type:UserWarning")


def demo_main(argv):
    return demo_cli.main(argv)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'shapes.ckpt')
    net = random_detector(NAME, list(SHAPE_CLASSES))
    return save_checkpoint(path, net, meta={'model': {'name': NAME,
                                                      'classes': list(SHAPE_CLASSES)}})


@pytest.fixture(scope='module')
def image_files(synthetic_root, tmp_path_factory):
    """Two synthetic VOC images (128x128) and one non-square PNG (150 wide, 100 high)."""
    folder = os.path.join(synthetic_root, 'JPEGImages')
    files = [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:2]]
    image, _ = render_sample(np.random.default_rng(5), width=150, height=100)
    wide = str(tmp_path_factory.mktemp('img') / 'wide.png')
    cv2.imwrite(wide, image)
    return files + [wide]


def test_demo_writes_one_png_per_image_at_the_original_size(checkpoint, image_files,
                                                            tmp_path):
    out = tmp_path / 'out'
    assert demo_main(image_files + ['--params', checkpoint, '--out', str(out),
                                    '--data-shape', str(SIDE), '--thresh', '0.3']) == 0
    for path in image_files:
        written = cv2.imread(str(out / (os.path.splitext(os.path.basename(path))[0] +
                                        '.png')))
        original = cv2.imread(path)
        assert written is not None and written.shape == original.shape
    assert len(os.listdir(out)) == len(image_files)


def test_exported_model_gives_the_same_detections_as_the_checkpoint(checkpoint, image_files,
                                                                    tmp_path):
    prefix = str(tmp_path / 'exp')
    export_detector(checkpoint, prefix, 'float32', data_shape=SIDE)
    from_ckpt = load_detector(checkpoint=checkpoint, data_shape=SIDE)
    from_export = load_detector(exported=prefix)
    assert from_export.data_shape == SIDE and from_export.classes == list(SHAPE_CLASSES)
    image = read_image(image_files[2])
    a, b = from_ckpt.detect(image, 0.2), from_export.detect(image, 0.2)
    assert len(a) > 0
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    assert (a.boxes[:, 2] <= 150).all() and (a.boxes[:, 3] <= 100).all()


class FixedOutputs:
    """A stand-in network returning fixed (ids, scores, boxes) in input coordinates."""

    def __init__(self, ids, scores, boxes):
        self.outputs = [mx.nd.array(np.array(a, dtype=np.float32)[None])
                        for a in (ids, scores, boxes)]

    def __call__(self, x):
        return self.outputs


def test_detect_rescales_boxes_and_drops_low_and_suppressed_rows():
    block = FixedOutputs(ids=[[1], [0], [-1]], scores=[[0.9], [0.1], [0.8]],
                         boxes=[[48, 24, 96, 72], [0, 0, 10, 10], [0, 0, 5, 5]])
    detector = Detector(block, ['a', 'b'], 'float32', SIDE, mx.cpu())
    found = detector.detect(np.zeros((100, 150, 3), np.uint8), thresh=0.5)
    assert found.class_ids.tolist() == [1]
    # x scales by 150/96, y by 100/96; the right edge is clipped to the image.
    np.testing.assert_allclose(found.boxes, [[75, 25, 150, 75]], rtol=1e-6)


def test_draw_puts_the_box_and_label_on_the_image_and_nothing_else():
    image = np.full((120, 160, 3), 128, np.uint8)
    drawn = draw_detections(image, Detections([[40, 50, 120, 100]], [0.87], [2]),
                            list(SHAPE_CLASSES))
    changed = np.any(drawn != image, axis=2)
    assert changed[75, 40] and changed[75, 120] and changed[100, 80]  # box edges
    assert changed[45, 41:60].any()  # label above the box's top-left corner
    assert not changed[80, 80] and not changed[110, 150]  # inside / outside untouched
    assert np.array_equal(image, np.full((120, 160, 3), 128, np.uint8)), 'input modified'


def test_unknown_class_ids_are_labelled_by_number():
    image = np.zeros((64, 64, 3), np.uint8)
    drawn = draw_detections(image, Detections([[10, 20, 50, 60]], [0.5], [7]), ['only'])
    assert np.any(drawn != image)


@pytest.mark.parametrize('case, message', [
    ('missing_image', 'No image at'), ('unreadable_image', 'not an image'),
    ('corrupt_checkpoint', 'damaged or truncated'),
    ('plain_params', 'no model description'), ('missing_export', 'No exported model')])
def test_user_mistakes_exit_2_with_one_clear_line(case, message, checkpoint, image_files,
                                                  tmp_path, capsys):
    junk = tmp_path / 'junk.jpg'
    junk.write_text('not an image')
    plain = str(tmp_path / 'plain.params')
    random_detector(NAME, list(SHAPE_CLASSES)).save_parameters(plain)
    image, source = image_files[0], ['--params', checkpoint]
    if case == 'missing_image':
        image = str(tmp_path / 'nope.jpg')
    elif case == 'unreadable_image':
        image = str(junk)
    elif case == 'corrupt_checkpoint':
        source = ['--params', str(junk)]
    elif case == 'plain_params':
        source = ['--params', plain]
    else:
        source = ['--exported', str(tmp_path / 'none')]
    assert demo_main([image] + source + ['--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error:') and message in err and '\n' not in err


def test_fp16_gpu_export_on_cpu_says_how_to_run_it(checkpoint, tmp_path):
    prefix = str(tmp_path / 'gpu16')
    export_detector(checkpoint, prefix, 'float16', target='gpu', data_shape=SIDE)
    with pytest.raises(PredictError, match='--target cpu'):
        load_detector(exported=prefix)
    cpu_prefix = str(tmp_path / 'cpu16')
    export_detector(checkpoint, cpu_prefix, 'float16', target='cpu', data_shape=SIDE)
    detector = load_detector(exported=cpu_prefix)
    assert detector.dtype == 'float16'
    assert detector.detect(np.zeros((64, 80, 3), np.uint8), 0.0).scores.dtype == np.float32


def test_script_as_a_command_has_no_traceback_for_a_missing_image(checkpoint, tmp_path):
    env = child_env()
    proc = subprocess.run([sys.executable, SCRIPT, str(tmp_path / 'nope.jpg'), '--params',
                           checkpoint], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr and 'No image at' in proc.stderr


def test_neither_or_both_sources_is_an_argument_error(checkpoint, image_files):
    for source in ([], ['--params', checkpoint, '--exported', 'x']):
        with pytest.raises(SystemExit) as exit_info:
            demo_main([image_files[0]] + source)
        assert exit_info.value.code == 2
    with pytest.raises(PredictError, match='exactly one'):
        load_detector()


def test_labels_of_crowded_boxes_do_not_overlap():
    from gluoncv_fp16.deploy.predict import label_boxes
    rng = np.random.RandomState(0)
    corners = rng.uniform(0, 60, (12, 2))
    boxes = np.concatenate([corners, corners + 40], axis=1)  # heavily overlapping boxes
    found = Detections(boxes, rng.uniform(0.1, 1, 12), rng.randint(0, 3, 12))
    placed = label_boxes((160, 200, 3), found, list(SHAPE_CLASSES))
    rects = [r for _, _, r in placed]
    assert len(rects) == 12
    for i, a in enumerate(rects):
        assert a[0] >= 0 and a[2] <= 200 and a[1] >= 0 and a[3] <= 160
        for b in rects[:i]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    best = int(np.argmax(found.scores))
    assert placed[0][0] == best and placed[0][2][3] <= found.boxes[best][1] + 1, \
        'the best detection keeps the natural spot above its box'


def test_auto_threshold_is_half_the_best_score():
    from gluoncv_fp16.deploy.predict import auto_threshold
    assert auto_threshold([0.34, 0.40]) == pytest.approx(0.20)
    assert auto_threshold([0.99, 0.2]) == pytest.approx(0.495) and auto_threshold([]) == 0.0


def test_checkpoint_data_shape_and_onnx_are_used_by_the_demo(image_files, tmp_path, capsys):
    pytest.importorskip('onnxruntime')
    from gluoncv_fp16.deploy.onnx_export import export_onnx
    net = random_detector(NAME, list(SHAPE_CLASSES))
    ckpt = save_checkpoint(str(tmp_path / 'c.ckpt'), net, meta={
        'model': {'name': NAME, 'classes': list(SHAPE_CLASSES)}, 'config': {'data_shape': 64}})
    assert load_detector(checkpoint=ckpt).data_shape == 64  # recorded, not 416
    onnx_file = export_onnx(ckpt, str(tmp_path / 'm'), check_images=False).path
    from_onnx, from_ckpt = load_detector(onnx=onnx_file), load_detector(checkpoint=ckpt)
    image = read_image(image_files[2])
    a, b = from_ckpt.detect(image, 0.05), from_onnx.detect(image, 0.05)
    assert len(a) > 0 and from_onnx.classes == list(SHAPE_CLASSES)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.1)
    out = tmp_path / 'out'
    assert demo_main(image_files + ['--onnx', onnx_file, '--out', str(out)]) == 0
    assert len(os.listdir(out)) == len(image_files)
    assert demo_main([image_files[0], '--onnx', str(tmp_path / 'none.onnx')]) == 2
    assert 'No ONNX model' in capsys.readouterr().err
