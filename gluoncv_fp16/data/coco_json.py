"""COCO JSON files as labelling tools export them: ``--dataset coco-json``.

One annotation file per split (``--train-json``, ``--val-json``), in any of the layouts
tools write:

* CVAT "COCO 1.0": ``annotations/instances_<subset>.json`` beside ``images/``;
  category ids from 1, an ``attributes`` dict per annotation (ignored).
* Roboflow "COCO": ``<split>/_annotations.coco.json`` beside that split's images;
  category 0 is usually a super-category with no boxes.
* Label Studio "COCO": ``result.json`` beside ``images/``; file names may carry a path
  prefix (``images/``, ``/data/upload/3/``, ``../../media/upload/``).

Images are looked up under ``--image-root`` when given, else in the JSON's folder and
its ``images/`` folder (and, for a JSON inside an ``annotations/`` folder, in the folder
above, its ``images/`` and, for ``instances_<subset>.json``, first ``images/<subset>/``). A file name that is not found as written is tried without
its leading folders one at a time, so prefixes written by the tool do not matter.

Labels are (N, 6) float32 ``[xmin, ymin, xmax, ymax, class, difficult]`` in pixels:

* boxes are ``[x, y, w, h]`` in continuous pixels (``xmax = x + w``, as CVAT, Roboflow
  and Label Studio write them; ``--dataset coco`` keeps GluonCV's ``x + w - 1``),
  clipped to the image;
* classes are the file's categories in the order of its ``categories`` list, mapped by
  name, whatever their ids (``[3, 7, 9]``, from 0 or 1). The validation file's
  categories are matched to the training file's by name. A category that has no box in
  either file and is the ``supercategory`` of other categories (Roboflow's category 0)
  is dropped; any other category without boxes is kept as a class (with a warning),
  because it is one the user defined;
* ``iscrowd`` boxes get ``difficult = 1``, as GluonCV's VOC reader marks difficult
  objects: trained on, and neither a hit nor a miss for the VOC07 mAP;
* images listed without annotations are background images (trained on);
* a ``width`` / ``height`` in the file that differs from the image file's is a warning
  naming the file (boxes are used as annotated, clipped to the real image).

Input that cannot be used -- not JSON, no ``images`` or ``categories``, an annotation
naming a category or image the file does not list, no image found at all -- raises
:class:`~gluoncv_fp16.errors.DatasetError` naming the file. Some images missing (not
all): recorded as bad samples (``missing image``), or an error with ``strict``.
"""
import json
import logging
import os
import urllib.parse

import numpy as np

from ..errors import DatasetError
from .base import ListedDetection, clip_boxes
from .imageio import encoded_size
from .registry import DatasetKind, register_dataset

__all__ = ['read_coco_json', 'coco_json_classes', 'image_folders', 'find_image',
           'CocoJsonSplit']

logger = logging.getLogger(__name__)

_MAX_SIZE_WARNINGS = 5


class CocoJsonSplit:
    """One parsed COCO JSON file: its images, annotations and categories (checked)."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, encoding='utf-8') as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise DatasetError("{}: no such COCO JSON file".format(path)) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DatasetError('{}: not a readable JSON file ({})'.format(path, err)) from None
        if not isinstance(doc, dict) or not isinstance(doc.get('images'), list) or \
                not isinstance(doc.get('categories'), list):
            raise DatasetError("{}: not a COCO detection file (it needs 'images' and "
                               "'categories' lists; export as COCO / COCO 1.0)".format(path))
        self.images = doc['images']
        self.categories = doc['categories']
        self.annotations = doc.get('annotations') or []
        try:
            self.category_names = {c['id']: str(c['name']).strip() for c in self.categories}
            self.image_ids = {img['id'] for img in self.images if img['file_name']}
        except (KeyError, TypeError) as err:
            raise DatasetError('{}: a category or image entry lacks {} (export as COCO)'
                               .format(path, err)) from None
        self.boxes_per_category = self._check_annotations()

    def _check_annotations(self):
        """{category id: boxes}; raises DatasetError for an annotation that cannot be used
        (the file is inconsistent: re-exporting is the fix, not skipping it)."""
        path, boxes_per_category = self.path, {}
        for ann in self.annotations:
            try:
                category, image = ann['category_id'], ann['image_id']
                box = [float(v) for v in ann['bbox']]
            except (KeyError, TypeError, ValueError) as err:
                raise DatasetError('{}: annotation {} lacks a usable {} (category_id, '
                                   'image_id and bbox [x, y, w, h] are needed)'.format(
                                       path, ann.get('id', '?') if isinstance(ann, dict)
                                       else '?', err)) from None
            if category not in self.category_names:
                raise DatasetError('{}: annotation {} has category_id {} which is not in '
                                   'its categories (ids {})'.format(
                                       path, ann.get('id', '?'), category,
                                       sorted(self.category_names)))
            if image not in self.image_ids:
                raise DatasetError('{}: annotation {} refers to image_id {} which is not in '
                                   'its images'.format(path, ann.get('id', '?'), image))
            if len(box) != 4:
                raise DatasetError('{}: annotation {} has a bbox of {} values; COCO boxes are '
                                   '[x, y, w, h]'.format(path, ann.get('id', '?'), len(box)))
            boxes_per_category[category] = boxes_per_category.get(category, 0) + 1
        return boxes_per_category


def coco_json_classes(*splits):
    """Class names: the first file's categories in list order (by name), without a
    Roboflow-style super-category (no boxes in any file, the ``supercategory`` of
    others). Later files' extra names are not classes (their boxes are dropped).

    Raises
    ------
    DatasetError
        No category left.
    """
    first = splits[0]
    boxes = {}
    for split in splits:
        for cid, count in split.boxes_per_category.items():
            name = split.category_names[cid]
            boxes[name] = boxes.get(name, 0) + count
    parents = {str(c.get('supercategory', '')).strip() for split in splits
               for c in split.categories if str(c['name']).strip() !=
               str(c.get('supercategory', '')).strip()}
    names = []
    for category in first.categories:
        name = str(category['name']).strip()
        if name in names:
            continue
        if not boxes.get(name) and name in parents:
            logger.info("%s: category '%s' (id %s) has no boxes and is the super-category "
                        "of others: not a class", first.path, name, category['id'])
            continue
        if not boxes.get(name):
            logger.warning("%s: category '%s' has no boxes in any split; it stays a class "
                           "the network learns nothing about", first.path, name)
        names.append(name)
    if not names:
        raise DatasetError('{}: no categories to train on'.format(first.path))
    return tuple(names)


def image_folders(json_path, image_root=None):
    """Where the images of `json_path` are looked for, in order."""
    if image_root:
        return [image_root]
    folder = os.path.dirname(os.path.abspath(json_path))
    found = [folder, os.path.join(folder, 'images')]
    if os.path.basename(folder) == 'annotations':  # CVAT, COCO: annotations/ beside images/
        parent = os.path.dirname(folder)
        found += [parent, os.path.join(parent, 'images')]
        name = os.path.splitext(os.path.basename(json_path))[0]
        if name.startswith('instances_'):  # CVAT with subsets: images/<subset>/, first
            found.insert(0, os.path.join(parent, 'images', name[len('instances_'):]))
    return found


def find_image(file_name, folders):
    """The path of `file_name` under one of `folders`, trying it as written, then
    without its leading folders one at a time (tools write prefixes such as
    ``/data/upload/3/``); None if nowhere."""
    names = [file_name.replace('\\', '/')]
    if urllib.parse.unquote(names[0]) != names[0]:
        names.append(urllib.parse.unquote(names[0]))
    for name in names:
        if os.path.isabs(name) and os.path.isfile(name):
            return name
        parts = [p for p in name.split('/') if p not in ('', '.')]
        for start in range(len(parts)):
            tail = os.path.join(*parts[start:])
            for folder in folders:
                path = os.path.join(folder, tail)
                if os.path.isfile(path):
                    return path
    return None


def read_coco_json(split, classes, image_root=None, strict=False):
    """(samples, missing) of `split` for :class:`.base.ListedDetection`: samples
    ``(path, label (N, 6), (width, height))`` in the file's image order, missing the
    file names found nowhere.

    Raises
    ------
    DatasetError
        No image of the file is found (wrong folder), or one is missing with `strict`.
    """
    folders = image_folders(split.path, image_root)
    index = {name: i for i, name in enumerate(classes)}
    class_of = {cid: index.get(name) for cid, name in split.category_names.items()}
    rows = {img['id']: [] for img in split.images}
    dropped = {}
    for ann in split.annotations:
        cls = class_of[ann['category_id']]
        if cls is None:
            dropped[split.category_names[ann['category_id']]] = True
            continue
        x, y, w, h = (float(v) for v in ann['bbox'])
        rows[ann['image_id']].append([x, y, x + w, y + h, cls, 1 if ann.get('iscrowd') else 0])
    for name in dropped:
        logger.warning("%s: boxes of category '%s' dropped: it is not a category of the "
                       "training file", split.path, name)
    samples, missing, mismatched = [], [], []
    for img in split.images:
        path = find_image(str(img['file_name']), folders)
        label = np.array(rows[img['id']], np.float32).reshape(-1, 6)
        recorded = _recorded_size(img)
        if path is None:
            missing.append(str(img['file_name']))
            path = os.path.join(folders[0], str(img['file_name']))
            size = recorded
        else:
            size = encoded_size(path) or recorded
            if recorded and size and tuple(recorded) != tuple(size):
                mismatched.append((path, recorded, size))
        samples.append((path, label, size or (64, 64)))
    _report_missing(split.path, missing, len(split.images), folders, strict)
    _report_sizes(split.path, mismatched)
    return samples


def _recorded_size(img):
    try:
        size = (int(img['width']), int(img['height']))
    except (KeyError, TypeError, ValueError):
        return None
    return size if min(size) > 0 else None


def _report_missing(json_path, missing, total, folders, strict):
    if not missing:
        return
    where = ', '.join(folders)
    if len(missing) == total or strict:
        raise DatasetError("{}: image '{}' not found in {}{}; pass --image-root DIR (the "
                           "folder holding the images)".format(
                               json_path, missing[0], where,
                               ' ({} of {} images missing)'.format(len(missing), total)
                               if len(missing) > 1 else ''))
    logger.warning("%s: %d of %d images not found in %s (first: '%s'); they are skipped as "
                   "missing images", json_path, len(missing), total, where, missing[0])


def _report_sizes(json_path, mismatched):
    for path, recorded, actual in mismatched[:_MAX_SIZE_WARNINGS]:
        logger.warning("%s: %s records %dx%d but the image is %dx%d (rotated or resized "
                       "after labelling?); its boxes are used as annotated, clipped to the "
                       "image", path, json_path, recorded[0], recorded[1], actual[0],
                       actual[1])
    if len(mismatched) > _MAX_SIZE_WARNINGS:
        logger.warning('%s: %d more images whose recorded size differs from the file',
                       json_path, len(mismatched) - _MAX_SIZE_WARNINGS)


def _clip_all(samples, log):
    """Clip boxes to each image (repairs recorded in `log`); an image whose boxes all
    leave it keeps an empty label only if it had none."""
    out = []
    for path, label, size in samples:
        clipped = clip_boxes(label, size[0], size[1], path, log)
        out.append((path, clipped, size, len(label) > 0 and len(clipped) == 0))
    return out


def _dataset(split, classes, options, train):
    dataset = ListedDetection(classes, strict=options.strict, train=train)
    for path, label, size, emptied in _clip_all(
            read_coco_json(split, classes, options.image_root, options.strict),
            dataset.bad_samples):
        if emptied and train:
            dataset.bad_samples.report(path, 'no valid boxes')
            continue
        dataset.add(path, label, size)
    return dataset


def _build(options):
    train_split, val_split = CocoJsonSplit(options.train_json), CocoJsonSplit(options.val_json)
    classes = coco_json_classes(train_split, val_split)
    logger.info('classes from %s: %s', options.train_json, ', '.join(classes))
    return (_dataset(train_split, classes, options, True),
            _dataset(val_split, classes, options, False))


register_dataset(DatasetKind(
    'coco-json', _build, help='COCO JSON files as CVAT, Roboflow and Label Studio export them',
    layout='one JSON per split; images under --image-root, else beside the JSON or in its '
           'images/', reads=('--train-json', '--val-json', '--image-root'),
    needs=('--train-json', '--val-json'),
    classes="the training JSON's categories in file order, by name (not Roboflow's "
            "box-less super-category)", coco_metrics=True))
