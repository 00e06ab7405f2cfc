"""The synthetic shapes set: reproducible, valid VOC, and the boxes are where the shapes are.

It is what the tests and the demo train on, so a wrong box here would make every
"the detector learns" check meaningless; it is checked against the pixels.
"""
import filecmp
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from gluoncv.data import VOCDetection

from helpers import ROOT, child_env
from gluoncv_fp16.data import make_synthetic
from gluoncv_fp16.data.synthetic import SHAPE_CLASSES, ensure_synthetic, generate, render_sample

SCRIPT = os.path.join(ROOT, 'scripts', 'make_synthetic.py')
SMALL = dict(num_train=5, num_val=3, width=64, height=64, seed=11)


class ShapesVOC(VOCDetection):
    """GluonCV's own VOC reader, told our class names."""
    CLASSES = SHAPE_CLASSES


def read_with_gluoncv(root):
    """GluonCV's reader over both splits of the dataset written at `root`."""
    parent, folder = os.path.split(os.path.abspath(root))
    return ShapesVOC(root=parent, splits=((folder, 'train'), (folder, 'val')))


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def assert_same_dataset(root_a, root_b):
    """Same files, byte-identical annotations and split lists, identical decoded pixels."""
    assert files_under(root_a) == files_under(root_b)
    for rel in files_under(root_a):
        a, b = os.path.join(root_a, rel), os.path.join(root_b, rel)
        if rel.endswith('.jpg'):
            np.testing.assert_array_equal(cv2.imread(a), cv2.imread(b), err_msg=rel)
        else:
            assert filecmp.cmp(a, b, shallow=False), rel


def test_same_seed_gives_identical_datasets(tmp_path):
    assert_same_dataset(generate(str(tmp_path / 'VOCa'), **SMALL),
                        generate(str(tmp_path / 'VOCb'), **SMALL))


def test_other_seed_gives_other_boxes(tmp_path):
    a = read_with_gluoncv(generate(str(tmp_path / 'VOCa'), **SMALL))
    b = read_with_gluoncv(generate(str(tmp_path / 'VOCb'), **dict(SMALL, seed=12)))
    assert any(not np.array_equal(a[i][1], b[i][1]) for i in range(len(a)))


def test_gluoncv_reads_exactly_the_drawn_boxes(tmp_path):
    """Files round-trip through GluonCV's VOC reader to what render_sample drew."""
    dataset = read_with_gluoncv(generate(str(tmp_path / 'VOCshapes'), **SMALL))
    assert len(dataset) == SMALL['num_train'] + SMALL['num_val']
    rng = np.random.default_rng(SMALL['seed'])  # generate() draws images in this order
    for index in range(len(dataset)):
        drawn, drawn_labels = render_sample(rng, SMALL['width'], SMALL['height'])
        image, label = dataset[index]
        assert image.shape == (SMALL['height'], SMALL['width'], 3)
        np.testing.assert_array_equal(label[:, :5], drawn_labels)
        assert (label[:, 5] == 0).all()  # nothing marked difficult
        # JPEG at quality 95 (and RGB vs BGR): close to the drawn pixels, not equal.
        jpeg_error = np.abs(image.asnumpy()[:, :, ::-1].astype(float) - drawn).mean()
        assert jpeg_error < 4, 'image {} differs from its drawing by {:.1f}'.format(
            index, jpeg_error)


def test_boxes_are_inside_the_image_and_not_degenerate(synthetic_root):
    dataset = read_with_gluoncv(synthetic_root)
    for index in range(len(dataset)):
        image, label = dataset[index]
        height, width = image.shape[:2]
        xmin, ymin, xmax, ymax, cls = label[:, :5].T
        assert len(label) >= 1
        assert (xmin >= 0).all() and (ymin >= 0).all()
        assert (xmax <= width - 1).all() and (ymax <= height - 1).all()
        # Shapes are at least 10% of the side across: nothing a detector cannot see.
        assert ((xmax - xmin) >= 0.1 * width - 1).all()
        assert ((ymax - ymin) >= 0.1 * height - 1).all()
        assert set(cls.astype(int)) <= set(range(len(SHAPE_CLASSES)))


def _overlaps(a, b):
    return not (a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3])


def shape_evidence(image, label):
    """Per visible object: (core std, core-to-bottom-edge diff, core-to-below-box diff).

    Every shape (circle, square, triangle) fills a patch a third of the way below its
    centre and reaches the bottom edge of its box at the centre column. Objects whose
    probe points a later-drawn shape covers are skipped; diffs are max over channels.
    """
    evidence = []
    for j, (x0, y0, x1, y1) in enumerate(label[:, :4].astype(int)):
        half, cx, cy = (x1 - x0) // 2, (x0 + x1) // 2, (y0 + y1) // 2
        a = max(1, half // 4)
        top = cy + half // 3 - a
        core_box, edge, below = (cx - a, top, cx + a, top + 2 * a), (cx, y1 - 2), (cx, y1 + 3)
        later = label[j + 1:, :4]
        if any(_overlaps(core_box, o) or _overlaps(edge * 2, o) for o in later):
            continue
        core = image[top:top + 2 * a + 1, cx - a:cx + a + 1].reshape(-1, 3)
        colour = core.mean(axis=0)
        outside = None
        if y1 + 3 < image.shape[0] and not any(_overlaps(below * 2, o) for o in label[:, :4]):
            outside = np.abs(image[below[1], below[0]] - colour).max()
        evidence.append((core.std(axis=0).max(), np.abs(image[edge[1], edge[0]] - colour).max(),
                         outside))
    return evidence


def test_shapes_are_where_the_boxes_say(synthetic_root):
    """Inside: one flat colour reaching the box edge. Just outside: something else."""
    dataset = read_with_gluoncv(synthetic_root)
    evidence = []
    for index in range(len(dataset)):
        image, label = dataset[index]
        evidence += shape_evidence(image.asnumpy().astype(float), label)
    assert len(evidence) >= len(dataset), 'too few unoccluded objects to judge'
    core_std, edge_diff, outside_diff = zip(*evidence)
    # Flat fill + JPEG q95 noise (measured <= 3.5) vs textured background (std ~5-10).
    assert max(core_std) < 6, 'box centre is not one shape: std {:.1f}'.format(max(core_std))
    assert max(edge_diff) < 25, 'shape does not reach its box bottom: {:.0f}'.format(
        max(edge_diff))
    outside = np.array([d for d in outside_diff if d is not None])
    # A random colour can match the background by chance (~1% of objects), hence 90%.
    assert (outside > 30).mean() >= 0.9, 'box extends past its shape: {}'.format(outside)


def test_ensure_synthetic_reuses_a_matching_folder(tmp_path):
    root = str(tmp_path / 'VOCshapes')
    ensure_synthetic(root, **SMALL)
    xml = os.path.join(root, 'Annotations', 'train_00000.xml')
    os.utime(xml, (0, 0))
    ensure_synthetic(root, **SMALL)
    assert os.path.getmtime(xml) == 0, 'same settings must not regenerate'
    ensure_synthetic(root, **dict(SMALL, seed=12))
    assert os.path.getmtime(xml) != 0, 'other settings must regenerate'


def run_script(*args):
    env = child_env()
    return subprocess.run([sys.executable, SCRIPT] + [str(a) for a in args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_make_synthetic_script_writes_what_generate_writes(tmp_path):
    out = tmp_path / 'VOCcli'
    proc = run_script(out, '--num-train', 5, '--num-val', 3, '--size', 64, '--seed', 11)
    assert proc.returncode == 0, proc.stderr
    assert '5 train + 3 val' in proc.stdout and str(out) in proc.stdout
    assert_same_dataset(str(out), generate(str(tmp_path / 'VOCapi'), **SMALL))


@pytest.mark.parametrize('args, complaint', [
    (['x', '--size', '16'], 'must be >= 32'),
    (['x', '--num-train', '-1'], 'must be >= 0'),
    (['x', '--max-objects', '0'], 'must be >= 1'),
    ([], 'the following arguments are required: root'),
])
def test_make_synthetic_script_rejects_bad_arguments(capsys, args, complaint):
    with pytest.raises(SystemExit) as info:
        make_synthetic.main(args)
    assert info.value.code == 2 and complaint in capsys.readouterr().err
