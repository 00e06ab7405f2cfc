"""Datasets as labelling tools export them (COCO JSON from CVAT / Roboflow / Label Studio,
Ultralytics YOLO txt), background images, and the one dataset registry."""
import json
import logging
import os

import numpy as np
import pytest

from helpers import write_rec_dataset
from gluoncv_fp16.data.datasets import DATASETS, build_datasets, dataset_table
from gluoncv_fp16.data.registry import (dataset_kinds, dataset_option_problems,
                                        register_dataset)
from gluoncv_fp16.errors import DatasetError

from helpers import CLASSES, SAMPLES, write_cvat, write_voc, write_yolo
from helpers import coco_doc as _coco_doc, dump_json as _dump, write_images as _write_images


def _boxes(label):
    return label[:, :5]


# ----- the registry ------------------------------------------------------------------------
def test_every_kind_is_registered_once_with_its_flags():
    assert tuple(k.name for k in dataset_kinds()) == DATASETS
    with pytest.raises(ValueError, match="'yolo' is registered twice"):
        register_dataset(dataset_kinds()[-1])
    assert {'voc', 'coco', 'custom', 'synthetic', 'rec', 'coco-json', 'yolo'} == set(DATASETS)
    table = dataset_table()
    assert all('`{}`'.format(name) in table for name in DATASETS)
    assert list(dataset_option_problems('yolo', {'--data': None})) == [
        "--dataset yolo needs --data FILE.yaml (Ultralytics YOLO txt (data.yaml + "
        "labels/*.txt))"]
    problems = list(dataset_option_problems('coco', {'--classes': ('a',)}))
    assert problems == ['--classes does nothing with --dataset coco; it is read by --dataset '
                        'custom / synthetic / rec']
    with pytest.raises(ValueError, match='choose one of voc, custom, coco'):
        build_datasets('imagenet')


def test_docs_dataset_table_is_the_registry():
    path = os.path.join(os.path.dirname(__file__), os.pardir, 'docs', 'data.md')
    with open(path) as f:
        assert dataset_table() in f.read()


# ----- COCO JSON ---------------------------------------------------------------------------
def test_cvat_export_maps_category_ids_by_name_and_keeps_backgrounds(tmp_path):
    path = write_cvat(str(tmp_path / 'cvat'))
    val_path = path.replace('default', 'val')  # a second subset: images/val/
    os.rename(str(tmp_path / 'cvat' / 'images'), str(tmp_path / 'val'))
    os.makedirs(str(tmp_path / 'cvat' / 'images'))
    os.rename(str(tmp_path / 'val'), str(tmp_path / 'cvat' / 'images' / 'val'))
    os.rename(path, val_path)
    write_cvat(str(tmp_path / 'cvat'))
    train, val, classes = build_datasets('coco-json', train_json=path, val_json=val_path)
    assert classes == list(CLASSES) and len(train) == len(val) == 4
    assert os.path.dirname(val.image_path(0)).endswith(os.path.join('images', 'val'))
    for k, (_, _, boxes) in enumerate(SAMPLES):
        np.testing.assert_array_equal(_boxes(train[k][1]), np.array(boxes, np.float32)
                                      .reshape(-1, 5))
    assert train.background_count() == 1 and val.background_count() == 1
    assert train[3][1][1, 5] == 1 and train[3][1][0, 5] == 0  # iscrowd -> difficult
    assert val.label(2).tolist() == [[-1] * 6]  # validation background: the dummy row


def test_category_order_is_the_files_not_the_ids(tmp_path):
    root = str(tmp_path / 'any')
    names = ['a{}.jpg'.format(k) for k in range(len(SAMPLES))]
    _write_images(root, names)
    categories = [{'id': 9, 'name': 'bird'}, {'id': 0, 'name': 'cat'}, {'id': 4, 'name': 'dog'}]
    path = _dump(os.path.join(root, 'labels.json'),
                 _coco_doc(names, categories, {0: 0, 1: 4, 2: 9}))
    train, _, classes = build_datasets('coco-json', train_json=path, val_json=path)
    assert classes == ['bird', 'cat', 'dog']
    assert train.label(0)[:, 4].tolist() == [1, 0]  # cat -> 1, bird -> 0


def test_roboflow_split_folders_drop_the_box_less_super_category(tmp_path, caplog):
    categories = [{'id': 0, 'name': 'animals', 'supercategory': 'none'}] + [
        {'id': i + 1, 'name': n, 'supercategory': 'animals'} for i, n in enumerate(CLASSES)] + [
        {'id': 4, 'name': 'fish', 'supercategory': 'animals'}]  # defined, never drawn
    paths = []
    for split in ('train', 'valid'):
        folder = str(tmp_path / 'rf' / split)
        names = ['x{}_jpg.rf.abc.jpg'.format(k) for k in range(len(SAMPLES))]
        _write_images(folder, names)
        paths.append(_dump(os.path.join(folder, '_annotations.coco.json'),
                           _coco_doc(names, categories, {0: 1, 1: 2, 2: 3})))
    with caplog.at_level(logging.WARNING):
        train, val, classes = build_datasets('coco-json', train_json=paths[0],
                                             val_json=paths[1])
    assert classes == list(CLASSES) + ['fish']  # 'animals' dropped, 'fish' kept
    assert "'fish' has no boxes" in caplog.text
    assert train.label(0)[:, 4].tolist() == [0, 2] and len(val) == 4


def test_label_studio_prefixed_file_names_and_size_mismatch(tmp_path, caplog):
    root = str(tmp_path / 'ls')
    names = ['1a2b3c4d-photo{}.png'.format(k) for k in range(len(SAMPLES))]
    _write_images(os.path.join(root, 'images'), names)
    written = ['images/' + names[0], '/data/upload/3/' + names[1],
               '../../label-studio/media/upload/' + names[2], names[3]]
    doc = _coco_doc(written, [{'id': i, 'name': n} for i, n in enumerate(CLASSES)],
                    {0: 0, 1: 1, 2: 2})
    doc['images'][1]['width'] = 640  # recorded size disagrees with the file
    path = _dump(os.path.join(root, 'result.json'), doc)
    with caplog.at_level(logging.WARNING):
        train, _, _ = build_datasets('coco-json', train_json=path, val_json=path)
    assert [os.path.basename(train.image_path(k)) for k in range(4)] == names
    assert train.bad_sample_count == 0 and train[2][0].shape == (72, 72, 3)
    assert 'photo1.png' in caplog.text and '640x80 but the image is 64x80' in caplog.text


def test_image_root_flag_and_boxes_clipped_to_the_image(tmp_path):
    images = str(tmp_path / 'elsewhere')
    names = ['p{}.png'.format(k) for k in range(len(SAMPLES))]
    _write_images(images, names)
    doc = _coco_doc(names, [{'id': 1, 'name': n} for n in CLASSES[:1]], {0: 1, 1: 1, 2: 1})
    doc['annotations'][0]['bbox'] = [-5, 6, 200, 44]  # out of the 96x64 image
    path = _dump(str(tmp_path / 'ann' / 'train.json'), doc)
    with pytest.raises(DatasetError, match="train.json: image 'p0.png' not found in .*"
                                           "--image-root DIR"):
        build_datasets('coco-json', train_json=path, val_json=path)
    train, _, _ = build_datasets('coco-json', train_json=path, val_json=path,
                                 image_root=images)
    assert train.label(0)[0, :4].tolist() == [0, 6, 96, 50]
    assert train.bad_samples.counts() == {'box clipped to image': 1}


@pytest.mark.parametrize('change, message', [
    (lambda d: d.pop('categories'), "not a COCO detection file"),
    (lambda d: d['annotations'][0].update(category_id=42),
     'annotation 1 has category_id 42 which is not in its categories'),
    (lambda d: d['annotations'][0].update(image_id=5), 'annotation 1 refers to image_id 5'),
    (lambda d: d['annotations'][0].pop('bbox'), "annotation 1 lacks a usable 'bbox'"),
])
def test_coco_json_mistakes_name_the_file(tmp_path, change, message):
    path = write_cvat(str(tmp_path / 'cvat'))
    with open(path) as f:
        doc = json.load(f)
    change(doc)
    _dump(path, doc)
    with pytest.raises(DatasetError, match='instances_default.json: ' + message):
        build_datasets('coco-json', train_json=path, val_json=path)


def test_not_json_names_the_file(tmp_path):
    path = tmp_path / 'x.json'
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match='x.json: not a readable JSON file'):
        build_datasets('coco-json', train_json=str(path), val_json=str(path))


# ----- YOLO txt ----------------------------------------------------------------------------
def test_yolo_names_mapping_list_file_and_backgrounds(tmp_path):
    path = write_yolo(str(tmp_path / 'yolo'))
    train, val, classes = build_datasets('yolo', data=path)
    assert classes == list(CLASSES) and len(train) == len(val) == 4
    assert train.background_count() == 1 and val.background_count() == 1
    for k, (_, _, boxes) in enumerate(SAMPLES):
        np.testing.assert_array_equal(_boxes(train[k][1]),
                                      np.array(boxes, np.float32).reshape(-1, 5))


def test_roboflow_yaml_paths_and_names_list(tmp_path):
    root = tmp_path / 'rf'
    write_yolo(str(root))  # Roboflow: ../ entries that only exist without the ../
    (root / 'data.yaml').write_text(
        'train: ../images/train\nval: ../images/val\nnc: 3\nnames: [cat, dog, bird]\n')
    train, _, classes = build_datasets('yolo', data=str(root / 'data.yaml'))
    assert classes == list(CLASSES) and len(train) == 4
    assert train.image_path(0) == str(root / 'images' / 'train' / 'img0.png')
    _replace(root / 'data.yaml', 'nc: 3', 'nc: 4')
    with pytest.raises(DatasetError, match='data.yaml: nc is 4 but names lists 3'):
        build_datasets('yolo', data=str(root / 'data.yaml'))


def test_labelimg_labels_beside_the_images(tmp_path):
    root = tmp_path / 'photos'
    names = ['p{}.jpg'.format(k) for k in range(len(SAMPLES))]
    _write_images(str(root), names)
    for name, (width, height, boxes) in zip(names, SAMPLES):
        (root / name.replace('.jpg', '.txt')).write_text(''.join(
            '{} {} {} {} {}\n'.format(c, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                                      (x2 - x1) / width, (y2 - y1) / height)
            for x1, y1, x2, y2, c in boxes))
    (root / 'train.txt').write_text('p0.jpg\np1.jpg\np2.jpg\n')
    (root / 'val.txt').write_text('p3.jpg\n')
    (root / 'data.yaml').write_text('train: train.txt\nval: val.txt\nnames: [cat, dog, bird]\n')
    train, val, _ = build_datasets('yolo', data=str(root / 'data.yaml'))
    assert len(train) == 3 and train.background_count() == 1 and len(val.label(0)) == 2
    np.testing.assert_allclose(_boxes(train.label(0)), np.array(SAMPLES[0][2]), atol=1e-4)
    for name in names:
        os.remove(str(root / name.replace('.jpg', '.txt')))
    with pytest.raises(DatasetError, match=r'no label file for any of the 3 training images'):
        build_datasets('yolo', data=str(root / 'data.yaml'))


@pytest.mark.parametrize('edit, message', [
    (lambda root: _replace(root / 'data.yaml', 'names:', 'labels:'), 'data.yaml: no class names'),
    (lambda root: (root / 'labels' / 'train' / 'img1.txt').write_text('7 0.5 0.5 0.1 0.1\n'),
     r'img1.txt line 1: class id 7 is outside 0..2'),
    (lambda root: (root / 'labels' / 'val' / 'img0.txt').write_text('0 0.5 oops\n'),
     r'img0.txt line 1: expected "class cx cy w h"'),
    (lambda root: _replace(root / 'data.yaml', 'train: train.txt', 'train: nope/'),
     "train entry '.*nope' is neither a folder nor a list file"),
    (lambda root: (root / 'data.yaml').write_text('names: [a]\ntrain: [x\n'),
     'data.yaml: not a readable YAML file'),
])
def test_yolo_mistakes_name_the_file(tmp_path, edit, message):
    root = tmp_path / 'yolo'
    write_yolo(str(root))
    edit(root)
    with pytest.raises(DatasetError, match=message):
        build_datasets('yolo', data=str(root / 'data.yaml'))


def _replace(path, old, new):
    path.write_text(path.read_text().replace(old, new))


# ----- all readers agree -------------------------------------------------------------------
def test_voc_coco_json_and_yolo_give_identical_training_samples(tmp_path, net):
    from gluoncv_fp16.data.transforms import YOLO3FastTrainTransform
    sets = [build_datasets('custom', root=write_voc(str(tmp_path / 'voc')),
                           classes=CLASSES)[0],
            build_datasets('coco-json', train_json=write_cvat(str(tmp_path / 'cvat')),
                           val_json=str(tmp_path / 'cvat' / 'annotations' /
                                        'instances_default.json'))[0],
            build_datasets('yolo', data=write_yolo(str(tmp_path / 'yolo')))[0]]
    transform = YOLO3FastTrainTransform(64, 64, net)
    for k in range(len(SAMPLES)):
        outputs = []
        for dataset in sets:
            img, label = dataset[k]
            outputs.append(transform.apply(img, label[:, :5],
                                           rng=np.random.default_rng(k)))
            np.testing.assert_array_equal(img, sets[0][k][0])
            np.testing.assert_array_equal(label[:, :5], sets[0][k][1][:, :5])
        for other in outputs[1:]:
            for a, b in zip(outputs[0], other):
                np.testing.assert_array_equal(a, b)


# ----- background images -------------------------------------------------------------------
@pytest.mark.parametrize('mixup', [False, True])
def test_backgrounds_reach_the_loss_with_negative_objectness_only(tmp_path, net,
                                                                  mixup):
    import mxnet as mx
    from gluoncv_fp16.data.device_batch import unpack
    from gluoncv_fp16.data.loader import make_train_loader
    train, _, _ = build_datasets('yolo', data=write_yolo(str(tmp_path / 'yolo')))
    loader = make_train_loader(train, net, 4, 64, augment=False, shuffle=False,
                               mixup=mixup)
    loader.set_epoch(0)
    batches = list(loader)
    assert len(batches) == 1 and train.bad_sample_count == 0  # nothing skipped
    image, gt, obj, centers, scales, weights, clas = (a.asnumpy() for a in unpack(batches[0]))
    assert image.shape[0] == 4
    if not mixup:  # (mixed, the background image carries its partner's boxes)
        assert (gt[2] == -1).all()  # the background: padding only
        assert (obj[2] == 0).all() and (weights[2] == 0).all() and (clas[2] == -1).all()
    assert all((obj[k] > 0).any() for k in (0, 1, 3))
    # one image as a batch (without mixup a batch of backgrounds only): finite losses
    with mx.autograd.record():
        losses = net(mx.nd.array(image[2:3]), mx.nd.array(gt[2:3]),
                     *(mx.nd.array(a[2:3]) for a in (obj, centers, scales, weights, clas)))
    values = [float(v.sum().asscalar()) for v in losses]
    assert all(np.isfinite(values)) and values[0] > 0
    if not mixup:
        assert values[1:] == [0, 0, 0]  # no box: centre, scale and class losses are 0
    net.hybridize()


def test_fp16_run_on_two_devices_with_backgrounds_and_mixup_has_no_nan(tmp_path, capsys):
    import csv
    from gluoncv_fp16.cli import train as train_cli
    path = write_yolo(str(tmp_path / 'yolo'))
    out = tmp_path / 'out'
    code = train_cli.main([
        '--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '4',
        '--dataset', 'yolo', '--data', path, '-j', '0', '--ctx', 'cpu:0,cpu:1',
        '--save-prefix', str(out) + os.sep, '--no-random-shape', '--log-interval', '1',
        '--no-plots', '--fp16', '--mixup', '--no-mixup-epochs', '0', '--epochs', '2',
        '--no-pretrained-base', '--lr', '0.001'])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert '4 training images (1 background, 25%)' in captured.out + captured.err
    with open(out / 'yolo3_mobilenet0.25_yolo_steps.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    losses = [float(r[k]) for r in rows for k in r if k.endswith('loss') and r[k]]
    assert len(rows) == 2 and losses and np.isfinite(losses).all()


@pytest.mark.parametrize('argv, message', [
    (['--dataset', 'yolo'], '--dataset yolo needs --data FILE.yaml'),
    (['--dataset', 'coco-json', '--train-json', '{json}'], '--dataset coco-json needs '
                                                           '--val-json FILE'),
    (['--dataset', 'yolo', '--data', '{yaml}', '--dataset-root', '{root}'],
     '--dataset-root does nothing with --dataset yolo'),
    (['--dataset', 'coco-json', '--train-json', '{root}/nope.json', '--val-json', '{json}'],
     "--train-json '.*nope.json': no such file"),
    (['--dataset', 'yolo', '--data', '{bad_yaml}'], 'bad.yaml: no class names'),
    (['--dataset', 'coco-json', '--train-json', '{json}', '--val-json', '{json}',
      '--image-root', '{root}'], "instances_default.json: image 'frame_000000.png' not found"),
])
def test_dataset_mistakes_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, argv,
                                                                 message):
    from gluoncv_fp16.cli import train as train_cli
    files = dict(json=write_cvat(str(tmp_path / 'cvat')), root=str(tmp_path),
                 yaml=write_yolo(str(tmp_path / 'yolo')), bad_yaml=str(tmp_path / 'bad.yaml'))
    (tmp_path / 'bad.yaml').write_text('train: yolo/train.txt\nval: yolo/images/val\n')
    out = tmp_path / 'out'
    code = train_cli.main(['--network', 'mobilenet0.25', '--data-shape', '64', '--gpus', '',
                           '-j', '0', '--save-prefix', str(out) + os.sep] +
                          [a.format(**files) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and 'Traceback' not in err
    assert __import__('re').search(message, err), err
    assert not out.exists()


def test_voc_and_record_backgrounds_are_kept_but_images_with_only_dropped_boxes_are_not(
        tmp_path):
    root = write_rec_dataset(str(tmp_path / 'rec'), 3, lambda k: [[], [], [[5, .1, .1, .5, .5]]][k])
    train, val, _ = build_datasets('rec', root=root, classes=['a', 'b'])
    assert train.background_count() is None  # known once read
    assert len(train[1][1]) == 0 and train.bad_sample_count == 0  # a background, kept
    assert len(train[2][1]) == 0 and train.bad_samples.counts() == {  # replaced by the next
        'unknown class dropped': 1, 'no valid boxes': 1}
    voc = write_voc(str(tmp_path / 'voc'))
    xml = os.path.join(voc, 'Annotations', '0003.xml')
    with open(xml) as f:
        text = f.read()
    with open(xml, 'w') as f:
        f.write(text.replace('<name>bird</name>', '<name>unicorn</name>').replace(
            '<name>cat</name>', '<name>unicorn</name>'))
    train, _, _ = build_datasets('custom', root=voc, classes=CLASSES)
    assert len(train) == 3 and train.background_count() == 1
    assert train.bad_samples.counts() == {'unknown class dropped': 1, 'no valid boxes': 1}


def test_an_all_background_batch_through_a_worker_and_its_ring_slot(tmp_path, net):
    from gluoncv_fp16.data.base import ListedDetection
    from gluoncv_fp16.data.device_batch import unpack
    from gluoncv_fp16.data.loader import make_train_loader
    folder = str(tmp_path / 'bg')
    _write_images(folder, ['a.png', 'b.png'], [SAMPLES[2], SAMPLES[2]])
    backgrounds = ListedDetection(CLASSES)
    for name in ('a.png', 'b.png'):
        backgrounds.add(os.path.join(folder, name), np.zeros((0, 6), np.float32), (72, 72))
    loader = make_train_loader(backgrounds, net, 2, 64, num_workers=1, mixup=True)
    try:
        loader.set_epoch(0)
        (batch,) = list(loader)
        _, gt, obj, _, _, weights, clas = (a.asnumpy() for a in unpack(batch))
    finally:
        loader.close()
    assert loader.transport['slot'] + loader.transport['file'] == 1
    assert gt.shape == (2, 1, 4) and (gt == -1).all()
    assert (obj == 0).all() and (weights == 0).all() and (clas == -1).all()
