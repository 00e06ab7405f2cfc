"""Data-side mistakes: one line and exit 2 before any work, bad samples counted once.

Each CLI case runs `gluoncv_fp16.cli.train.main` in-process on a copy of the small synthetic set
(128 px images trained at 64 px, mobilenet0.25, no ImageNet base unless the case is
about it) with one thing broken.
"""
import csv
import glob
import logging
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest


from gluoncv_fp16.data import make_train_loader
from gluoncv_fp16.data.base import clip_boxes
from gluoncv_fp16.data.datasets import build_datasets, rare_classes
from gluoncv_fp16.data.imageio import BadSampleError, BadSampleLog, check_encoded
from gluoncv_fp16.data.voc import ClassCount
from helpers import ROOT, run_cli, write_rec_dataset

PREFIX = 'yolo3_mobilenet0.25_custom'
STRICT_TAIL = '; fix or remove the file, or drop --strict-data (strict=False) to repair or ' \
              'skip such samples'


@pytest.fixture
def data(synthetic_copy):
    """A private copy of the synthetic VOC-layout set (24 training, 8 validation images)."""
    return synthetic_copy


def ids(root, split):
    return open(os.path.join(root, 'ImageSets', 'Main', split + '.txt')).read().split()


def image(root, image_id):
    return os.path.join(root, 'JPEGImages', image_id + '.jpg')


def xml(root, image_id):
    return os.path.join(root, 'Annotations', image_id + '.xml')


def truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])


def edit_xml(path, old, new):
    text = Path(path).read_text()
    assert old in text
    Path(path).write_text(text.replace(old, new, 1))


def cli_args(root, out, *extra, base='--no-pretrained-base'):
    return ['--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '4',
            '--dataset', 'custom', '--dataset-root', root, '-j', '0', '--gpus', '',
            '--save-prefix', str(out) + os.sep, '--no-random-shape', '--log-interval', '1',
            '--no-plots', '--epochs', '1', *([base] if base else []), *extra]


def assert_refused(code, out, pattern, out_dir):
    """Exit 2, exactly one stderr line matching `pattern`, no traceback, no files."""
    lines = out.err.strip().splitlines()
    assert code == 2, out.err[-3000:]
    assert len(lines) == 1 and 'Traceback' not in out.err, out.err[-3000:]
    assert re.fullmatch(pattern, lines[0]), lines[0]
    assert not os.path.exists(str(out_dir)), os.listdir(str(out_dir))


def read_rows(out):
    with open(os.path.join(str(out), PREFIX + '_metrics.csv'), newline='') as f:
        return list(csv.DictReader(f))


# ----- 1. offline without --no-pretrained-base -----------------------------------------------
@pytest.mark.parametrize('case', ['offline', 'damaged cache', 'unpublished'])
def test_weights_that_cannot_be_had_are_one_line_naming_the_flags(case, data, tmp_path, capsys,
                                                                  monkeypatch):
    cache = tmp_path / 'mxnet_home'
    monkeypatch.setenv('MXNET_HOME', str(cache))  # an empty GluonCV cache
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')  # nothing listens there
    monkeypatch.chdir(tmp_path)
    models = str(cache / 'models')
    # custom data starts from the ImageNet backbone by default; --pretrained replaces it
    argv = cli_args(data, tmp_path / 'out', base=None)
    if case == 'damaged cache':
        os.makedirs(models)
        Path(models, 'mobilenet0.25-f0046a3d.params').write_bytes(b'x' * 100)
    if case == 'unpublished':
        argv += ['--pretrained', 'voc']
    before = set(os.listdir(str(tmp_path)))
    code, out = run_cli(argv, capsys)
    expected = {
        'offline': re.escape(
            'error: the ImageNet weights of the mobilenet0.25 backbone are not in {} and '
            'could not be downloaded (ConnectionError): train from scratch with '
            '--no-pretrained-base, start from your own weights with --pretrained FILE, or '
            "put mobilenet0.25-f0046a3d.params there (GluonCV's cache; MXNET_HOME moves "
            'it)'.format(models)),
        'damaged cache': re.escape(
            'error: the ImageNet weights of the mobilenet0.25 backbone fail their SHA-1 '
            'check in {} (an interrupted download?) and could not be downloaded again ('
            .format(models)) + r'\w+' + re.escape(
            '): train from scratch with --no-pretrained-base, start from your own weights '
            'with --pretrained FILE, or delete mobilenet0.25-f0046a3d.params and download '
            'it again'),
        'unpublished': re.escape(
            'error: --pretrained voc: GluonCV publishes no weights for '
            'yolo3_mobilenet0.25_voc; give your own with --pretrained FILE, or use '
            '--network darknet53 or mobilenet1.0'),
    }[case]
    assert_refused(code, out, expected, tmp_path / 'out')
    assert set(os.listdir(str(tmp_path))) - before <= {'mxnet_home'}  # no log in the cwd


def test_readme_names_no_pretrained_base_for_offline_and_custom_data():
    readme = Path(ROOT, 'README.md').read_text()
    assert re.search(r'offline[^\n]*--no-pretrained-base|--no-pretrained-base[^\n]*offline',
                     readme, re.IGNORECASE)


# ----- 2. --strict-data and a bad training sample --------------------------------------------
def test_strict_data_refuses_a_damaged_training_image_before_training(data, tmp_path, capsys):
    bad = image(data, ids(data, 'train')[5])
    truncate(bad)
    code, out = run_cli(cli_args(data, tmp_path / 'out', '--strict-data'), capsys)
    assert_refused(code, out, re.escape('error: {}: truncated image{}'.format(bad, STRICT_TAIL)),
                   tmp_path / 'out')


def test_strict_data_fault_mid_run_in_a_worker_is_one_line_and_keeps_the_checkpoint(
        data, tmp_path, capsys):
    out_dir = tmp_path / 'out'
    assert run_cli(cli_args(data, out_dir), capsys)[0] == 0
    last = out_dir / (PREFIX + '_last.ckpt')
    saved = last.read_bytes()
    # The annotation claims a 200 px wide image with a box at x 100..190: nothing is wrong
    # in the files themselves, only decoding shows the image is 128 px wide.
    bad = xml(data, ids(data, 'train')[7])
    text = Path(bad).read_text()
    text = re.sub(r'<width>\d+</width>', '<width>200</width>', text)
    text = re.sub(r'<xmin>\d+</xmin>', '<xmin>100</xmin>', text, count=1)
    text = re.sub(r'<xmax>\d+</xmax>', '<xmax>190</xmax>', text, count=1)
    Path(bad).write_text(text)
    code, out = run_cli(cli_args(data, out_dir, '--epochs', '2', '--resume', 'auto',
                                 '--strict-data', '-j', '2'), capsys)
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and 'Traceback' not in out.err, out.err[-3000:]
    assert lines[0] == 'error: {}: box clipped to image{}'.format(bad, STRICT_TAIL)
    assert last.read_bytes() == saved
    assert [r['epoch'] for r in read_rows(out_dir)] == ['0']


# ----- 3. grayscale is a valid image ---------------------------------------------------------
def test_grayscale_images_are_converted_not_refused_under_strict_data(data, tmp_path, capsys):
    for image_id in (ids(data, 'train')[0], ids(data, 'val')[0]):
        path = image(data, image_id)
        cv2.imwrite(path, cv2.imread(path, cv2.IMREAD_GRAYSCALE))
    train, val, _ = build_datasets('custom', root=data, strict=True)
    assert train[0][0].shape == (128, 128, 3) and val[0][0].shape == (128, 128, 3)
    assert train.bad_samples.conversions() == {'grayscale converted': 1}
    code, out = run_cli(cli_args(data, tmp_path / 'out', '--strict-data', '--max-iters', '1'),
                        capsys)
    assert code == 0, out.err[-3000:]
    assert read_rows(tmp_path / 'out')[0]['bad_samples'] == '0'


# ----- 4. validation damage found before the first epoch -------------------------------------
@pytest.mark.parametrize('damage', ['truncated image', 'missing image', 'unreadable image'])
def test_strict_data_refuses_damaged_validation_images_before_training(damage, data, tmp_path,
                                                                       capsys):
    bad = image(data, ids(data, 'val')[3])
    if damage == 'truncated image':
        truncate(bad)
    elif damage == 'missing image':
        os.remove(bad)
    else:
        Path(bad).write_bytes(b'\xff\xd8 a JPEG start, then nothing of one \xff\xd9')
    detail = ' (no JPEG frame header)' if damage == 'unreadable image' else ''
    code, out = run_cli(cli_args(data, tmp_path / 'out', '--strict-data'), capsys)
    assert_refused(code, out, re.escape('error: {}: {}{}{}'.format(bad, damage, detail,
                                                                  STRICT_TAIL)),
                   tmp_path / 'out')


def test_cheap_check_finds_what_decoding_finds(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 255, (40, 56, 3)).astype(np.uint8)
    jpeg = cv2.imencode('.jpg', rgb)[1]
    png = cv2.imencode('.png', rgb)[1]
    assert check_encoded(jpeg) is None and check_encoded(png) is None
    assert check_encoded(cv2.imencode('.bmp', rgb)[1]) is None
    assert check_encoded(jpeg[:len(jpeg) // 2]) == ('truncated image', '')
    assert check_encoded(png[:len(png) - 20]) == ('truncated image', '')
    assert check_encoded(np.zeros(0, np.uint8)) == ('unreadable image', 'empty file')
    assert check_encoded(b'BM not a bitmap')[0] == 'unreadable image'
    # a JPEG whose segments are intact up to the end marker, but without a frame header
    no_frame = b'\xff\xd8\xff\xe0\x00\x04ab\xff\xd9'
    assert check_encoded(no_frame) == ('unreadable image', 'no JPEG frame header')


# ----- 5. classes read from the annotations --------------------------------------------------
def test_classes_from_annotations_are_listed_and_a_rare_name_is_warned(data, caplog):
    edit_xml(xml(data, ids(data, 'train')[4]), '<name>', '<name>tri')  # one misspelt object
    with caplog.at_level(logging.INFO, logger='gluoncv_fp16.data'):
        _, _, classes = build_datasets('custom', root=data)
    misspelt = [c for c in classes if c not in ('circle', 'square', 'triangle')]
    assert len(misspelt) == 1
    listing = [r.getMessage() for r in caplog.records
               if r.getMessage().startswith('classes read from the annotations: ')]
    assert len(listing) == 1 and re.search(r'circle \(\d+ objects in \d+ files\)', listing[0])
    assert listing[0].endswith(', {} (1 object in 1 file)'.format(misspelt[0]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and
                'annotation files' in r.getMessage()]
    assert warnings == [
        "class '{}' appears in only 1 of 32 annotation files (first: {}) while ".format(
            misspelt[0], xml(data, ids(data, 'train')[4])) +
        warnings[0].split(' while ')[1]]
    assert warnings[0].endswith('a misspelt name? Fix the annotation, or name the classes '
                                'with --classes circle,square,triangle (objects of other '
                                'names are then dropped and counted)')


def test_rare_class_rule():
    def counts(**files):
        return {n: ClassCount(f, f, 'x') for n, f in files.items()}
    assert rare_classes(counts(box=300, cross=280, triangle=1), 600) == ['triangle']
    assert rare_classes(counts(box=300, cross=5), 600) == ['cross']  # 5 <= 1% of 600
    assert rare_classes(counts(box=300, cross=7), 600) == []
    assert rare_classes(counts(box=15, cross=2), 24) == []  # 15 < 10 x 2: a small set
    assert rare_classes(counts(box=20, cross=2), 24) == ['cross']


# ----- 6. bad-sample accounting ----------------------------------------------------------------
def test_dropped_boxes_say_what_is_wrong():
    label = np.array([[30, 5, 10, 20, 0],     # xmin > xmax
                      [5, 30, 20, 10, 0],     # ymin > ymax
                      [5, 5, 5, 20, 0],       # zero width
                      [70, 70, 90, 90, 0],    # outside a 64 x 64 image
                      [1, 2, 30, 40, 1]], np.float32)
    log = BadSampleLog()
    kept = clip_boxes(label, 64, 64, 'a.xml', log)
    np.testing.assert_array_equal(kept, label[4:])
    assert log.counts() == {'box with xmin > xmax dropped': 1,
                            'box with ymin > ymax dropped': 1, 'zero-area box dropped': 1,
                            'box outside the image dropped': 1}


@pytest.mark.parametrize('bbox, area, reason', [
    ([10, 5, -20, 8], -160, 'box with negative width dropped'),
    ([10, 5, 20, -8], -160, 'box with negative height dropped'),
    ([10, 5, 0, 8], 0, 'zero-area box dropped'),
    ([500, 5, 20, 8], 160, 'box outside the image dropped'),
])
def test_coco_dropped_boxes_say_what_is_wrong(bbox, area, reason):
    from gluoncv_fp16.data.coco import _dropped_box_reason  # pylint: disable=protected-access
    assert _dropped_box_reason(bbox, area) == reason


def test_two_workers_warn_each_bad_file_once_over_epochs_and_count_it(data, tmp_path):
    bad = image(data, ids(data, 'train')[2])
    truncate(bad)
    train, _, _ = build_datasets('custom', root=data)
    from gluoncv_fp16.model_zoo import get_model
    net = get_model('yolo3_mobilenet0.25_custom', classes=train.classes, pretrained_base=False)
    net.initialize()
    # a file handler, inherited by the forked workers: it sees their warnings too
    handler = logging.FileHandler(str(tmp_path / 'warnings.log'))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger('gluoncv_fp16.data')
    logger.addHandler(handler)
    loader = make_train_loader(train, net, 4, 64, num_workers=2)
    try:
        for epoch in range(3):
            loader.set_epoch(epoch)
            assert len(list(loader)) == 6
    finally:
        loader.close()
        logger.removeHandler(handler)
        handler.close()
    lines = (tmp_path / 'warnings.log').read_text().splitlines()
    assert lines == ['bad sample skipped: {}: truncated image'.format(bad)]
    assert train.bad_samples.counts() == {'truncated image': 1}


def test_every_kind_of_bad_sample_is_in_the_epoch_line_and_metrics_csv(data, tmp_path, capsys):
    train_ids, val_ids = ids(data, 'train'), ids(data, 'val')
    truncate(image(data, train_ids[1]))
    os.remove(image(data, val_ids[2]))
    swapped = next(xml(data, i) for i in train_ids[2:]  # an image that keeps another box
                   if Path(xml(data, i)).read_text().count('<object>') > 1)
    text = Path(swapped).read_text()
    xmin = re.search(r'<xmin>(\d+)</xmin>', text).group(1)
    xmax = re.search(r'<xmax>(\d+)</xmax>', text).group(1)
    edit_xml(swapped, '<xmin>{}</xmin>'.format(xmin), '<xmin>{}</xmin>'.format(int(xmax) + 5))
    code, out = run_cli(cli_args(data, tmp_path / 'out'), capsys)
    assert code == 0, out.err[-3000:]
    kinds = ('1 x box with xmin > xmax dropped, 1 x missing image, 1 x truncated image')
    assert re.search(r'1 of 8 validation images are unusable \(1 x missing image\); each is '
                     r'evaluated as a gray image', out.out)
    training = out.out.index('training ' + PREFIX[:-len('_custom')])
    assert out.out.index('validation images are unusable') < training  # before the epoch
    assert re.search(r'\[Epoch 0\] .* s, 3 bad samples so far \(' + re.escape(kinds) + r'\)',
                     out.out)
    assert read_rows(tmp_path / 'out')[0]['bad_samples'] == '3'
    log = Path(glob.glob(str(tmp_path / 'out' / '*_train.log'))[0]).read_text()
    for kind in ('xmin > xmax', 'missing image', 'truncated image'):
        assert len(re.findall('bad sample skipped: .*' + kind, log)) == 1, kind


def test_scan_reads_recordio_records(tmp_path):
    from gluoncv_fp16.data.scan import scan_images
    root = write_rec_dataset(
        str(tmp_path / 'rec'), 3, lambda k: [[0, .1, .2, .6, .9]], img_fmt='.jpg',
        damage=lambda split, k, packed: packed[:len(packed) // 2] if (split, k) == ('val', 1)
        else packed)
    train, val, _ = build_datasets('rec', root=root, classes=['a'])
    assert scan_images(train, 'training') == 0
    assert scan_images(val) == 1
    assert val.bad_samples.counts() == {'truncated image': 1}
    with pytest.raises(BadSampleError, match=r'val\.rec#1: truncated image'):
        scan_images(build_datasets('rec', root=root, classes=['a'], strict=True)[1])
