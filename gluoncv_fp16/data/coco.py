"""MS COCO detection via pycocotools, usable by GluonCV's ``COCODetectionMetric``.

Same sample conventions as GluonCV's ``COCODetection``: labels (N, 5) float32
``[xmin, ymin, xmax, ymax, contiguous class]``, boxes clipped to the image, zero-area
boxes dropped, crowd boxes kept; images without annotations are background images (the
training split trains on them, GluonCV skips them); the training split skips an image
whose boxes were all dropped; the validation split keeps every image in sorted image-id
order (with a ``-1`` dummy label when empty) because the metric assumes that order. The metric also reads ``coco``,
``contiguous_id_to_json`` and ``classes``, provided here.
"""
import logging
import os

import numpy as np
from gluoncv.utils.bbox import bbox_clip_xyxy, bbox_xywh_to_xyxy

from .base import DetectionDataset
from .imageio import read_image
from .registry import DatasetKind, register_dataset

__all__ = ['COCODetection', 'coco_annotation_path']

logger = logging.getLogger(__name__)


def coco_annotation_path(root, split):
    """``root/annotations/<split>.json``, with a one-line error if it is missing."""
    if not os.path.isdir(root):
        raise FileNotFoundError("COCO folder not found: expected '{}' holding annotations/ "
                                "and the image folders (e.g. train2017/)".format(root))
    path = os.path.join(root, 'annotations', split + '.json')
    if not os.path.isfile(path):
        raise FileNotFoundError("COCO annotation file not found: expected '{}'".format(path))
    return path


class COCODetection(DetectionDataset):
    """One COCO annotation file and its images.

    Parameters
    ----------
    root : str
        COCO folder (``annotations/``, ``train2017/``, ``val2017/`` ...).
    split : str
        Annotation file name without ``.json``, e.g. ``'instances_val2017'``; images
        are looked up in ``root/<split without 'instances_'>/<file_name>``.
    classes : sequence of str, optional
        Class names to keep, in contiguous-id order (default: all categories of the
        file, in category-id order, as GluonCV).
    strict, train
        See :class:`.base.DetectionDataset`.
    """

    def __init__(self, root, split, classes=None, strict=False, train=True):
        from pycocotools.coco import COCO
        self._root = os.path.expanduser(root)
        coco = COCO(coco_annotation_path(self._root, split))
        categories = coco.loadCats(coco.getCatIds())
        names = [c['name'] for c in categories]
        super().__init__(names if classes is None else classes, strict=strict, train=train)
        unknown = sorted(set(self.classes) - set(names))
        if unknown:
            raise ValueError('classes {} are not categories of {}; available: {}'.format(
                unknown, split, ', '.join(names[:10]) + (' ...' if len(names) > 10 else '')))
        self.coco = coco
        by_name = {c['name']: c['id'] for c in categories}
        self.contiguous_id_to_json = {i: by_name[n] for i, n in enumerate(self.classes)}
        self.json_id_to_contiguous = {v: k for k, v in self.contiguous_id_to_json.items()}
        self._folder = os.path.join(self._root, split.split('_')[-1])
        for entry in coco.loadImgs(sorted(coco.getImgIds())):
            self._add(entry)
        if self.bad_samples.count:
            logger.warning('COCO %s: %d images kept; %s', split, len(self),
                           self.bad_samples.summary())

    def _add(self, entry):
        path = os.path.join(self._folder, entry['file_name'])
        width, height = float(entry['width']), float(entry['height'])
        label, annotated = self._label(entry, width, height, path)
        if len(label) == 0 and annotated and self.train:
            return  # boxes there, none usable (recorded): not a background image
        if len(label) == 0 and not self.train:
            label = np.full((1, 5), -1, np.float32)
        self._names.append(path)
        self._images.append(path)
        self._labels.append(label)
        self._sizes.append((width, height))

    def _label(self, entry, width, height, path):
        rows, annotated = [], False
        for obj in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[entry['id']], iscrowd=None)):
            if obj.get('ignore', 0) == 1 or obj['category_id'] not in self.json_id_to_contiguous:
                continue
            annotated = True
            # GluonCV's own conversion (inclusive pixel ends) and clipping
            box = list(bbox_clip_xyxy(bbox_xywh_to_xyxy(obj['bbox']), width, height))
            if obj['area'] > 0 and box[2] > box[0] and box[3] > box[1]:
                rows.append(box + [self.json_id_to_contiguous[obj['category_id']]])
            else:
                self.bad_samples.report(path, _dropped_box_reason(obj['bbox'], obj['area']))
        return np.array(rows, dtype=np.float32).reshape(-1, 5), annotated

    def _read(self, idx):
        return read_image(self._images[idx], self.bad_samples)


def _dropped_box_reason(bbox, area):
    """Why a COCO box [x, y, w, h] left nothing: a negative size is a mistyped corner."""
    width, height = bbox[2], bbox[3]
    if width < 0 or height < 0:
        return 'box with negative {} dropped'.format('width' if width < 0 else 'height')
    if min(width, height) <= 1 or area <= 0:  # inclusive pixel ends: 1 px has no extent
        return 'zero-area box dropped'
    return 'box outside the image dropped'


def _build_coco(options):
    train_split, val_split = options.splits
    classes = options.classes
    return (COCODetection(options.root, train_split, classes, options.strict, train=True),
            COCODetection(options.root, val_split, classes, options.strict, train=False))


register_dataset(DatasetKind(
    'coco', _build_coco, help="MS COCO in GluonCV's layout",
    layout='root/annotations/instances_{train,val}2017.json, root/{train,val}2017/',
    reads=('--dataset-root',), default_root=os.path.join('~', '.mxnet', 'datasets', 'coco'),
    splits=('instances_train2017', 'instances_val2017'), classes="the JSON's categories, by id", model_suffix='coco',
    coco_metrics=True, gluoncv_coco=True))
