"""The dataset report (data/report.py, gluoncv-fp16-data, training's start-up report):
each warning on crafted VOC-layout folders of 64 px images, the statistics by hand,
the labels PNG, --strict-data refusing in one line before anything is written."""
import logging
import os

import cv2
import numpy as np
import pytest

from helpers import write_rec_dataset
from gluoncv_fp16.cli import data as data_cli
from gluoncv_fp16.cli import train as train_cli
from gluoncv_fp16.data.datasets import build_datasets
from gluoncv_fp16.data.report import (DUPLICATE, OUTSIDE, TINY, UNREADABLE, VAL_ONLY,
                                      ZERO_AREA, Record, build_report, dataset_records,
                                      record_problems, startup_report)
from gluoncv_fp16.errors import ConfigError

SIDE = 64


def _xml(image_id, objects, size=SIDE):
    rows = ''.join(
        '<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}'
        '</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>'.format(name, *box)
        for name, box in objects)
    return ('<annotation><filename>{}.jpg</filename><size><width>{}</width><height>{}'
            '</height><depth>3</depth></size>{}</annotation>'.format(image_id, size, size,
                                                                   rows))


def write_voc(root, splits, broken=()):
    """A VOC-layout folder: `splits` maps split -> {image id: [(name, (x0, y0, x1, y1))]}
    in VOC's 1-based pixels; images 64 px noise JPEGs, those in `broken` not images."""
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.RandomState(0)
    for split, images in splits.items():
        with open(os.path.join(root, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write(''.join(i + '\n' for i in images))
        for image_id, objects in images.items():
            with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
                f.write(_xml(image_id, objects))
            path = os.path.join(root, 'JPEGImages', image_id + '.jpg')
            if image_id in broken:
                with open(path, 'wb') as f:
                    f.write(b'not an image')
            else:
                cv2.imwrite(path, rng.randint(0, 255, (SIDE, SIDE, 3)).astype(np.uint8))
    return root


CAT, DOG = (8, 8, 40, 40), (30, 20, 60, 50)
GOOD = {'train': {'t0': [('cat', CAT)], 't1': [('dog', DOG), ('cat', CAT)],
                  't2': [('dog', DOG)]},
        'val': {'v0': [('cat', CAT)], 'v1': [('dog', DOG)]}}
FAULTY = {
    'train': {
        'ok': [('cat', CAT), ('dog', DOG)],
        'outside': [('cat', (40, 40, 90, 60))],                    # past the 64 px border
        'flat': [('cat', CAT), ('dog', (20, 20, 20, 40))],         # zero width
        'twice': [('dog', DOG), ('dog', (30, 21, 60, 50))],        # same dog, 1 px apart
        'tiny': [('cat', CAT), ('dog', (10, 10, 11, 30))],         # 1 px wide
        'broken': [('cat', CAT)],                                  # not an image
    },
    'val': {'v0': [('bird', (5, 5, 30, 30))], 'empty': []},        # bird: never trained
}


@pytest.fixture
def faulty(tmp_path):
    return write_voc(str(tmp_path / 'faulty'), FAULTY, broken=('broken',))


def _by_kind(report):
    found = {}
    for problem in report.problems:
        found.setdefault(problem.kind, set()).add(os.path.basename(problem.path))
    return found


def test_each_problem_is_named_by_its_file(faulty):
    train, val, classes = build_datasets('custom', root=faulty, classes=['cat', 'dog', 'bird'])
    report = build_report(train, val, classes, data_shape=64, check_images=True)
    assert _by_kind(report) == {
        OUTSIDE: {'outside.xml'},        # clipped by the reader, named from its log
        ZERO_AREA: {'flat.xml'},         # dropped by the reader, named from its log
        DUPLICATE: {'twice.xml'},
        TINY: {'tiny.xml'},
        VAL_ONLY: {'v0.xml'},
        UNREADABLE: {'broken.jpg'},
    }
    assert {p.kind for p in report.errors} == {OUTSIDE, ZERO_AREA, DUPLICATE, VAL_ONLY,
                                                UNREADABLE}  # a tiny box only warns
    lines = report.problem_lines()
    assert any(line.startswith('validation class only in validation (error): 1 file: ') and
               "class 'bird'" in line for line in lines)
    assert any(line.startswith('training box under 2 px: 1 file: ') and 'tiny.xml' in line
               for line in lines)
    assert report.error_line().startswith('--strict-data: 5 data errors in the labels')


def test_tiny_depends_on_the_data_shape(faulty):
    train, val, classes = build_datasets('custom', root=faulty, classes=['cat', 'dog', 'bird'])
    # at 320 px the 1 px box of a 64 px image is 5 px wide: no warning
    assert TINY not in _by_kind(build_report(train, val, classes, data_shape=320))


def test_records_of_readers_that_do_not_repair():
    """A reader that keeps its boxes as written: the report sees them itself."""
    record = Record('a.txt', 64, 48, np.array([[0, 0, 70, 10], [5, 5, 5, 20], [1, 1, 20, 20],
                                               [1.5, 1, 20, 20.5]]), np.array([0, 0, 1, 1]))
    kinds = {p.kind: p.detail for p in record_problems(record, 'training', 64)}
    assert kinds == {OUTSIDE: '1 of 4 boxes, image 64x48', ZERO_AREA: '1 of 4 boxes',
                     DUPLICATE: '1 pair'}


def test_statistics_by_hand(tmp_path):
    root = write_voc(str(tmp_path / 'good'), GOOD)
    train, val, classes = build_datasets('custom', root=root)
    assert classes == ['cat', 'dog']
    report = build_report(train, val, classes, data_shape=128)
    training, validation = report.splits['training'], report.splits['validation']
    assert (training.images, training.boxes, training.backgrounds) == (3, 4, 0)
    assert training.boxes_per_image.tolist() == [1, 2, 1]
    assert training.class_images.tolist() == [2, 2] and training.class_boxes.tolist() == [2, 2]
    assert validation.class_boxes.tolist() == [1, 1]
    # VOC 1-based (8, 8, 40, 40) is 32 px wide on a 64 px image: 64 px at 128 px
    cat_sizes = training.sizes[training.box_classes == 0]
    np.testing.assert_allclose(cat_sizes, [[64, 64], [64, 64]])
    np.testing.assert_allclose(training.centres[training.box_classes == 0][0],
                               [23 / 64, 23 / 64])
    assert not report.problems and report.error_line() is None
    lines = report.summary_lines()
    assert lines[0].startswith('dataset report at 128 px: training: 3 images (0 backgrounds,'
                               ' 0.0%), 4 boxes (1.33 per image, max 2)')
    assert lines[1] == ('per class, images/boxes in training | validation: cat 2/2 | 1/1, '
                        'dog 2/2 | 1/1')
    assert '0 small (< 32x32), 4 medium, 0 large' in lines[2]


@pytest.mark.parametrize('img_fmt', ['.jpg', '.png'])
def test_recordio_records_match_what_the_reader_reads(tmp_path, img_fmt):
    root = write_rec_dataset(str(tmp_path / 'rec'), 3, lambda k: [
        [k % 2, 0.1, 0.2, 0.6, 0.9]] + ([[1, 0.5, 0.5, 0.52, 0.9]] if k == 2 else []),
        img_fmt=img_fmt)
    train, val, classes = build_datasets('rec', root=root, classes=['a', 'b'])
    records = dataset_records(train)
    for k, record in enumerate(records):
        label = train[k][1]  # reading a record gives its label in pixels
        assert (record.width, record.height) == (64, 48)
        np.testing.assert_allclose(record.boxes, label[:, :4], atol=1e-4)
        assert record.classes.tolist() == label[:, 4].astype(int).tolist()
    report = build_report(train, val, classes, data_shape=64)
    # the 0.02 x 64 = 1.3 px wide box of record 2 is under 2 px at 64 px
    assert [(p.kind, p.path) for p in report.problems] == [
        (TINY, records[2].path), (TINY, os.path.join(root, 'val.rec') + '#2')]


def test_background_images_are_counted(faulty):
    train, val, classes = build_datasets('custom', root=faulty, classes=['cat', 'dog', 'bird'])
    report = build_report(train, val, classes, data_shape=64)
    assert report.splits['validation'].backgrounds == 1   # 'empty' has no boxes
    assert [r.path for r in dataset_records(val) if not len(r.classes)] == \
        [os.path.join(faulty, 'Annotations', 'empty.xml')]


def test_startup_report_logs_writes_the_png_and_refuses_when_strict(faulty, tmp_path,
                                                                     caplog):
    train, val, classes = build_datasets('custom', root=faulty, classes=['cat', 'dog', 'bird'])
    png = str(tmp_path / 'run_labels.png')
    with pytest.raises(ConfigError, match='^--strict-data: '):
        startup_report(train, val, classes, 64, png_path=png, strict=True)
    assert not os.path.exists(png)
    with caplog.at_level(logging.INFO, logger='gluoncv_fp16.data.report'):
        startup_report(train, val, classes, 64, png_path=png)
    assert os.path.getsize(png) > 5000
    assert 'dataset report at 64 px' in caplog.text and 'duplicate box (error)' in caplog.text


def test_command_prints_the_report_and_writes_the_png(faulty, tmp_path, capsys):
    out = tmp_path / 'out'
    assert data_cli.main(['--dataset', 'custom', '--dataset-root', faulty, '--classes',
                          'cat,dog,bird', '--data-shape', '64',
                          '--save-prefix', str(out) + os.sep]) == 0
    text = capsys.readouterr().out
    assert 'dataset report at 64 px' in text and 'unreadable image (error)' in text
    assert (out / 'custom_labels.png').stat().st_size > 5000


def test_command_strict_data_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    # images and boxes a strict reader accepts; the duplicate is the report's to find
    root = write_voc(str(tmp_path / 'dup'), {'train': {'a': [('cat', CAT), ('cat', CAT)]},
                                             'val': {'b': [('cat', CAT)]}})
    out = tmp_path / 'out'
    assert data_cli.main(['--dataset', 'custom', '--dataset-root', root, '--strict-data',
                          '--save-prefix', str(out) + os.sep]) == 2
    captured = capsys.readouterr()
    assert captured.out == ''
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: --strict-data: 1 data error')
    assert 'a.xml' in lines[0] and not out.exists()


def test_training_strict_data_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    root = write_voc(str(tmp_path / 'dup'), {'train': {'a': [('cat', CAT), ('cat', CAT)]},
                                             'val': {'b': [('cat', CAT)]}})
    out = tmp_path / 'run'
    code = train_cli.main(['--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size',
                           '2', '--dataset', 'custom', '--dataset-root', root, '-j', '0',
                           '--gpus', '', '--save-prefix', str(out) + os.sep, '--strict-data'])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith('error: --strict-data: ')
    assert 'duplicate box' in err[0] and not out.exists()


def test_training_start_writes_labels_png_and_logs_the_summary(tmp_path, caplog):
    from gluoncv_fp16.train.build import build_training
    root = write_voc(str(tmp_path / 'good'), GOOD)
    out = str(tmp_path / 'run') + os.sep
    cfg = train_cli.make_config(train_cli.parse_args([
        '--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '2', '--dataset',
        'custom', '--dataset-root', root, '-j', '0', '--gpus', '', '--save-prefix', out,
        '--no-pretrained-base']))
    with caplog.at_level(logging.INFO):
        build_training(cfg)
    assert os.path.getsize(out + 'yolo3_mobilenet0.25_custom_labels.png') > 5000
    assert 'dataset report at 64 px: training: 3 images' in caplog.text


def test_command_help_names_the_dataset_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        data_cli.main(['--help'])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in ('--dataset', '--dataset-root', '--classes', '--data-shape', '--strict-data',
                 '--save-prefix'):
        assert name in text
    assert '--epochs' not in text  # only the dataset flags of training
