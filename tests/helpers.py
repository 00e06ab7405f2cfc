"""What several test modules build: tiny datasets in each labelling tool's format and an
untrained detector whose scores differ. Test modules import from here, never from each
other."""
import json
import os

import cv2
import mxnet as mx
import numpy as np

from gluoncv_fp16.model_zoo import get_model

# Each image: (width, height, boxes [x1, y1, x2, y2, class]) in continuous pixels; the
# third has no boxes (a background image).
SAMPLES = [
    (96, 64, [[4, 6, 40, 50, 0], [50, 10, 90, 60, 2]]),
    (64, 80, [[10, 20, 30, 70, 1]]),
    (72, 72, []),
    (80, 64, [[0, 0, 80, 64, 2], [20, 10, 30, 25, 0]]),
]
CLASSES = ('cat', 'dog', 'bird')


def sample_image(k, width, height):
    rng = np.random.RandomState(k)
    return rng.randint(0, 255, (height, width, 3)).astype(np.uint8)


def write_images(folder, names, samples=SAMPLES):
    os.makedirs(folder, exist_ok=True)
    for name, (width, height, _) in zip(names, samples):
        cv2.imwrite(os.path.join(folder, name), sample_image(names.index(name), width, height))


def coco_doc(names, categories, category_of, samples=SAMPLES, crowd=()):
    """A COCO JSON document; `category_of[class]` is the category id of a class."""
    images, annotations = [], []
    for k, (name, (width, height, boxes)) in enumerate(zip(names, samples)):
        images.append({'id': 100 + k, 'file_name': name, 'width': width, 'height': height})
        for x1, y1, x2, y2, cls in boxes:
            annotations.append({'id': len(annotations) + 1, 'image_id': 100 + k,
                                'category_id': category_of[cls], 'area': (x2 - x1) * (y2 - y1),
                                'bbox': [x1, y1, x2 - x1, y2 - y1],
                                'iscrowd': int(len(annotations) in crowd),
                                'attributes': {'occluded': False}})
    return {'images': images, 'annotations': annotations, 'categories': categories}


def dump_json(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(doc, f)
    return path


def write_cvat(root):
    """CVAT "COCO 1.0": annotations/instances_default.json, images/, ids 3, 7, 9."""
    names = ['frame_{:06d}.png'.format(k) for k in range(len(SAMPLES))]
    write_images(os.path.join(root, 'images'), names)
    categories = [{'id': i, 'name': n, 'supercategory': ''} for i, n in zip((3, 7, 9), CLASSES)]
    return dump_json(os.path.join(root, 'annotations', 'instances_default.json'),
                 coco_doc(names, categories, {0: 3, 1: 7, 2: 9}, crowd=(4,)))


def write_voc(root):
    """The same samples in a VOC-layout folder (1-based pixel corners, as VOC files)."""
    ids = ['{:04d}'.format(k) for k in range(len(SAMPLES))]
    write_images(os.path.join(root, 'JPEGImages'), [i + '.png' for i in ids])
    os.makedirs(os.path.join(root, 'Annotations'))
    for image_id, (width, height, boxes) in zip(ids, SAMPLES):
        objects = ''.join(
            '<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}'
            '</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>'.format(
                CLASSES[c], x1 + 1, y1 + 1, x2 + 1, y2 + 1) for x1, y1, x2, y2, c in boxes)
        with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
            f.write('<annotation><size><width>{}</width><height>{}</height></size>{}'
                    '</annotation>'.format(width, height, objects))
    os.makedirs(os.path.join(root, 'ImageSets', 'Main'))
    for split in ('train', 'val'):
        with open(os.path.join(root, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    return root


def write_yolo(root, names=None):
    """Ultralytics layout: train from a list file, val from a folder; names as a map; the
    background's label file missing (train) or empty (val)."""
    files = ['img{}.png'.format(k) for k in range(len(SAMPLES))]
    for split in ('train', 'val'):
        write_images(os.path.join(root, 'images', split), files)
        os.makedirs(os.path.join(root, 'labels', split))
        for name, (width, height, boxes) in zip(files, SAMPLES):
            if not boxes and split == 'train':
                continue  # missing label file: a background
            with open(os.path.join(root, 'labels', split, name[:-4] + '.txt'), 'w') as f:
                for x1, y1, x2, y2, cls in boxes:
                    f.write('{} {!r} {!r} {!r} {!r}\n'.format(
                        cls, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                        (x2 - x1) / width, (y2 - y1) / height))
    with open(os.path.join(root, 'train.txt'), 'w') as f:
        f.write(''.join('./images/train/{}\n'.format(n) for n in files))
    with open(os.path.join(root, 'data.yaml'), 'w') as f:
        f.write('path: .\ntrain: train.txt\nval: [images/val]\nnames:\n{}'.format(
            names if names is not None else
            ''.join('  {}: {}\n'.format(i, n) for i, n in enumerate(CLASSES))))
    return os.path.join(root, 'data.yaml')


def random_detector(name, classes):
    """An initialised net whose untrained scores are not all equal.

    He initialisation keeps activations O(1) through the un-updated BatchNorm statistics
    used in inference; MXNet's default init shrinks them to ~1e-6, making every score 0.25.
    """
    net = get_model(name, classes=classes, pretrained_base=False)
    net.initialize(mx.init.MSRAPrelu(factor_type='in', slope=0.0))
    net(mx.nd.zeros((1, 3, 64, 64)))
    return net
