"""Ultralytics YOLO txt datasets: ``--dataset yolo --data FILE.yaml``.

The data.yaml holds::

    path: ../datasets/mine      # dataset folder; relative: to the yaml's folder (default)
    train: images/train         # a folder, a .txt list of images, or a list of those
    val: images/val
    names: [cat, dog]           # or {0: cat, 1: dog}; nc, if given, must agree

``train`` and ``val`` are relative to ``path``; an entry starting with ``../`` that does
not exist is also tried without it (Roboflow writes ``../train/images`` next to the
yaml, which Ultralytics accepts the same way). A folder means every image below it; a
list file holds one image path per line, relative to the list file's folder. The label
of ``.../images/.../x.jpg`` is ``.../labels/.../x.txt`` (the last ``images`` folder
swapped for ``labels``), one object per line: ``class cx cy w h``, normalised to the
image size (a polygon ``class x1 y1 x2 y2 ...`` becomes its bounding box); without that
file, ``x.txt`` beside the image is used if it exists (LabelImg). A missing or empty
label file is a background image; no label file for any training image is an error.

Labels are (N, 6) float32 ``[xmin, ymin, xmax, ymax, class, 0]`` in pixels (continuous:
``xmin = (cx - w / 2) * width``), clipped to the image; the image size is read from the
file's header (an image that is missing or unreadable is skipped and counted as a bad
sample; all of them missing is an error). A yaml without names, a split that matches no image, a class id outside
``names``, or a line that is not numbers raises
:class:`~gluoncv_fp16.errors.DatasetError` naming the file (and line).
"""
import glob
import logging
import os

import numpy as np

from ..errors import DatasetError
from .base import ListedDetection, clip_boxes
from .imageio import encoded_size
from .registry import DatasetKind, register_dataset

__all__ = ['read_data_yaml', 'label_path', 'read_label_file', 'IMAGE_EXTENSIONS']

logger = logging.getLogger(__name__)

# Ultralytics' IMG_FORMATS that OpenCV reads
IMAGE_EXTENSIONS = ('.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp', '.pfm',
                    '.dng', '.mpo')


def _yaml_load(path):
    try:
        import yaml
    except ImportError:  # a dependency of the package; only a broken install lacks it
        raise DatasetError("--dataset yolo needs PyYAML: pip install pyyaml") from None
    try:
        with open(path, encoding='utf-8') as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise DatasetError('{}: no such data.yaml file'.format(path)) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DatasetError('{}: not a readable YAML file ({})'.format(
            path, str(err).splitlines()[0])) from None


def _names(doc, path):
    names = doc.get('names')
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            ids = None
        if ids != list(range(len(names))):
            raise DatasetError('{}: names ids must be 0..{} (got {})'.format(
                path, len(names) - 1, list(names)))
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if not isinstance(names, list) or not names:
        raise DatasetError("{}: no class names; add 'names: [a, b, ...]' (or "
                           "'names: {{0: a, 1: b}}')".format(path))
    names = tuple(str(n).strip() for n in names)
    if 'nc' in doc and doc['nc'] != len(names):
        raise DatasetError('{}: nc is {} but names lists {}'.format(path, doc['nc'],
                                                                   len(names)))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError('{}: class names {} appear more than once'.format(path, repeated))
    return names


def read_data_yaml(path):
    """``(root, {'train': [...], 'val': [...]}, names)`` of a data.yaml: the dataset
    folder, each split's entries as absolute paths, and the class names."""
    doc = _yaml_load(path)
    if not isinstance(doc, dict):
        raise DatasetError('{}: expected keys path, train, val and names'.format(path))
    names = _names(doc, path)
    base = os.path.dirname(os.path.abspath(path))
    root = os.path.join(base, os.path.expanduser(str(doc['path']))) if doc.get('path') \
        else base
    splits = {}
    for split in ('train', 'val'):
        entries = doc.get(split)
        if not entries:
            raise DatasetError("{}: no '{}' entry (a folder, a list file, or a list of "
                               "those)".format(path, split))
        splits[split] = [_resolve(root, str(e)) for e in
                         (entries if isinstance(entries, list) else [entries])]
    return os.path.normpath(root), splits, names


def _resolve(root, entry):
    full = os.path.normpath(os.path.join(root, os.path.expanduser(entry)))
    if not os.path.exists(full) and entry.startswith('../'):
        full = os.path.normpath(os.path.join(root, entry[3:]))
    return full


def _split_images(entries, yaml_path, split):
    images = []
    for entry in entries:
        if os.path.isdir(entry):
            images += sorted(p for p in glob.glob(os.path.join(entry, '**', '*'),
                                                  recursive=True)
                             if p.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(entry):
            folder = os.path.dirname(entry)
            with open(entry, encoding='utf-8') as f:
                images += [os.path.normpath(os.path.join(folder, line.strip()))
                           for line in f if line.strip()]
        else:
            raise DatasetError("{}: {} entry '{}' is neither a folder nor a list file"
                               .format(yaml_path, split, entry))
    if not images:
        raise DatasetError('{}: {} ({}) holds no images ({})'.format(
            yaml_path, split, ', '.join(entries), ' '.join(IMAGE_EXTENSIONS[:4])))
    return images


def label_path(image_path):
    """The label file of `image_path`: its last ``images`` folder swapped for
    ``labels``, the extension for ``.txt`` (Ultralytics' rule); when that file does not
    exist but one beside the image does (LabelImg's YOLO mode), that one."""
    marker = os.sep + 'images' + os.sep
    head, found, tail = image_path.rpartition(marker)
    path = os.path.splitext(head + os.sep + 'labels' + os.sep + tail if found
                            else image_path)[0] + '.txt'
    beside = os.path.splitext(image_path)[0] + '.txt'
    return beside if path != beside and not os.path.exists(path) and \
        os.path.exists(beside) else path


def read_label_file(path, num_class):
    """(N, 5) float64 ``[class, cx, cy, w, h]`` normalised; (0, 5) when the file is
    missing or empty (a background image).

    Raises
    ------
    DatasetError
        A line that is not numbers, or a class id outside ``0..num_class - 1``.
    """
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return np.zeros((0, 5))
    rows = []
    for number, line in enumerate(lines, 1):
        values = line.split()
        if not values:
            continue
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            numbers = None
        if numbers is None or len(numbers) < 5 or (len(numbers) > 5 and len(numbers) % 2 == 0):
            raise DatasetError('{} line {}: expected "class cx cy w h" (or "class x1 y1 x2 '
                               'y2 ..."), got {!r}'.format(path, number, line.strip()))
        cls = numbers[0]
        if cls != int(cls) or not 0 <= cls < num_class:
            raise DatasetError('{} line {}: class id {} is outside 0..{} (the names in '
                               'data.yaml)'.format(path, number, values[0], num_class - 1))
        if len(numbers) > 5:  # polygon: its bounding box
            xs, ys = numbers[1::2], numbers[2::2]
            numbers = [cls, (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2,
                       max(xs) - min(xs), max(ys) - min(ys)]
        rows.append(numbers)
    return np.array(rows, np.float64).reshape(-1, 5)


def _pixel_label(rows, width, height):
    """[class, cx, cy, w, h] normalised -> (N, 6) float32 corners in pixels."""
    label = np.zeros((len(rows), 6), np.float64)
    label[:, 0] = (rows[:, 1] - rows[:, 3] / 2) * width
    label[:, 1] = (rows[:, 2] - rows[:, 4] / 2) * height
    label[:, 2] = (rows[:, 1] + rows[:, 3] / 2) * width
    label[:, 3] = (rows[:, 2] + rows[:, 4] / 2) * height
    label[:, 4] = rows[:, 0]
    return label.astype(np.float32)


def _dataset(images, names, strict, train, yaml_path):
    dataset = ListedDetection(names, strict=strict, train=train)
    missing, labelled = [], 0
    for image in images:
        labels = label_path(image)
        labelled += os.path.exists(labels)
        rows = read_label_file(labels, len(names))
        try:
            size = encoded_size(image)
        except FileNotFoundError:
            missing.append(image)
            dataset.bad_samples.report(image, 'missing image')
            continue
        if size is None:  # skipped: its boxes cannot be placed without the image's size
            dataset.bad_samples.report(image, 'unreadable image')
            continue
        label = clip_boxes(_pixel_label(rows, *size), size[0], size[1], image,
                           dataset.bad_samples)
        if len(rows) and not len(label) and train:
            dataset.bad_samples.report(image, 'no valid boxes')
            continue
        dataset.add(image, label, size)
    if len(missing) == len(images):
        raise DatasetError("{}: none of the {} images listed exists (first: '{}')".format(
            yaml_path, len(images), images[0]))
    if train and not labelled:  # every image a background: the labels are elsewhere
        raise DatasetError("{}: no label file for any of the {} training images (the first "
                           "would be '{}'); labels go in a labels/ folder mirroring images/"
                           .format(yaml_path, len(images), label_path(images[0])))
    return dataset


def _build(options):
    _, splits, names = read_data_yaml(options.data)
    logger.info('classes from %s: %s', options.data, ', '.join(names))
    return tuple(_dataset(_split_images(splits[split], options.data, split), names,
                          options.strict, split == 'train', options.data)
                 for split in ('train', 'val'))


register_dataset(DatasetKind(
    'yolo', _build, help="Ultralytics YOLO txt (data.yaml + labels/*.txt)",
    layout='data.yaml: path, train/val (folders, list files or lists), names; '
           'images/ <-> labels/', reads=('--data',), needs=('--data',),
    classes='names in data.yaml'))
