"""A small detection dataset in Pascal VOC layout: coloured shapes on textured noise.

The project's built-in dataset (no download needed) and what the tests train on. It is
deliberately easy -- large, distinct objects, few classes, small images -- so that a
from-scratch detector visibly learns within minutes on a CPU. Boxes are exact (computed
from the drawn geometry) and everything is a pure function of the seed.

Layout written under `root`::

    Annotations/<id>.xml   JPEGImages/<id>.jpg   ImageSets/Main/{train,val}.txt
"""
import dataclasses
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np

from .registry import DatasetKind, register_dataset
from .voc import build_custom

__all__ = ['SHAPE_CLASSES', 'generate', 'render_sample', 'ensure_synthetic']

SHAPE_CLASSES = ('circle', 'square', 'triangle')
_MARKER = '.complete'
_DEFAULT_ROOT = os.path.join('~', '.cache', 'gluoncv_fp16', 'synthetic')


def _background(rng, height, width):
    """Smooth colour gradient + blurred noise + faint stripes: texture, not clutter."""
    base = rng.uniform(60, 200, size=3)
    ramp = np.linspace(-30, 30, width)[None, :, None] * rng.uniform(-1, 1, size=3)
    noise = cv2.GaussianBlur(rng.normal(0, 25, size=(height, width, 3)), (0, 0), 2)
    stripes = 10 * np.sin(np.arange(height)[:, None, None] / rng.uniform(3, 9))
    return np.clip(base + ramp + noise + stripes, 0, 255)


def _draw(img, cls, cx, cy, r, color):
    """Draw one shape of class index `cls`; returns its exact (xmin, ymin, xmax, ymax)."""
    name = SHAPE_CLASSES[cls]
    if name == 'circle':
        cv2.circle(img, (cx, cy), r, color, thickness=-1, lineType=cv2.LINE_8)
        return cx - r, cy - r, cx + r, cy + r
    if name == 'square':
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), color, thickness=-1)
        return cx - r, cy - r, cx + r, cy + r
    pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
    cv2.fillPoly(img, [pts], color, lineType=cv2.LINE_8)
    return cx - r, cy - r, cx + r, cy + r


def render_sample(rng, width=160, height=160, max_objects=3, min_frac=0.2, max_frac=0.45):
    """One image (H, W, 3) uint8 BGR and its labels (N, 5) float32 [xmin, ymin, xmax, ymax, cls].

    Shapes are squares of side 2r in their box, placed so that at most modest overlap
    occurs (a new box may not cover more than 30% of an earlier one).
    """
    img = _background(rng, height, width)
    labels = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            r = int(rng.uniform(min_frac, max_frac) * min(width, height) / 2)
            cx = int(rng.integers(r + 1, width - r - 1))
            cy = int(rng.integers(r + 1, height - r - 1))
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(_overlap_frac(box, prev[:4]) < 0.3 for prev in labels):
                break
        else:
            continue
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        color = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        labels.append((*_draw(img, cls, cx, cy, r, color), cls))
    return img.astype(np.uint8), np.array(labels, dtype=np.float32).reshape(-1, 5)


def _overlap_frac(a, b):
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / float((b[2] - b[0]) * (b[3] - b[1]))


def _annotation_xml(image_id, width, height, labels):
    root = ET.Element('annotation')
    ET.SubElement(root, 'filename').text = image_id + '.jpg'
    size = ET.SubElement(root, 'size')
    for tag, val in (('width', width), ('height', height), ('depth', 3)):
        ET.SubElement(size, tag).text = str(val)
    for xmin, ymin, xmax, ymax, cls in labels:
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = SHAPE_CLASSES[int(cls)]
        ET.SubElement(obj, 'difficult').text = '0'
        bnd = ET.SubElement(obj, 'bndbox')
        for tag, val in (('xmin', xmin), ('ymin', ymin), ('xmax', xmax), ('ymax', ymax)):
            # VOC files are 1-based; GluonCV's reader subtracts 1 on load.
            ET.SubElement(bnd, tag).text = str(int(val) + 1)
    return ET.ElementTree(root)


def generate(root, num_train=200, num_val=50, width=160, height=160, max_objects=3, seed=0):
    """Write the dataset under `root` (created if needed); returns `root`.

    The same arguments always give byte-identical annotations and identical pixels.
    """
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {'train': [], 'val': []}
    for index in range(num_train + num_val):
        split = 'train' if index < num_train else 'val'
        image_id = '{}_{:05d}'.format(split, index)
        img, labels = render_sample(rng, width, height, max_objects)
        cv2.imwrite(os.path.join(root, 'JPEGImages', image_id + '.jpg'), img,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        _annotation_xml(image_id, width, height, labels).write(
            os.path.join(root, 'Annotations', image_id + '.xml'))
        splits[split].append(image_id)
    for split, ids in splits.items():
        with open(os.path.join(root, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    with open(os.path.join(root, _MARKER), 'w') as f:
        f.write('{} {} {} {} {} {}\n'.format(num_train, num_val, width, height,
                                               max_objects, seed))
    return root


def ensure_synthetic(root, **kwargs):
    """Generate into `root` once; later calls with the same settings reuse it."""
    marker = os.path.join(root, _MARKER)
    settings = dict(num_train=200, num_val=50, width=160, height=160, max_objects=3, seed=0)
    settings.update(kwargs)
    expected = '{num_train} {num_val} {width} {height} {max_objects} {seed}\n'.format(
        **settings)
    if os.path.isfile(marker):
        with open(marker) as f:
            if f.read() == expected:
                return root
    return generate(root, **settings)


def _build_synthetic(options):
    # The default cache follows the current defaults (regenerated when they change); a
    # folder the user names that already holds a complete set is used as it is -- never
    # overwritten because its settings differ from today's defaults.
    root = options.root
    if os.path.abspath(root) == os.path.abspath(os.path.expanduser(_DEFAULT_ROOT)) or \
            not os.path.isfile(os.path.join(root, _MARKER)):
        ensure_synthetic(root)
    return build_custom(dataclasses.replace(options, classes=options.classes or SHAPE_CLASSES))


register_dataset(DatasetKind(
    'synthetic', _build_synthetic,
    help='the built-in shapes set, generated once (no download)',
    layout='a VOC-layout folder written on first use', reads=('--dataset-root', '--classes'),
    default_root=_DEFAULT_ROOT, classes=', '.join(SHAPE_CLASSES), pretrained_base=False))
