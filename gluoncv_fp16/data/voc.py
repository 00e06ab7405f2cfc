"""Pascal VOC-layout folders: the VOC devkit, custom folders, the synthetic set.

Layout of one folder (``root``)::

    Annotations/<id>.xml   JPEGImages/<id>.jpg   ImageSets/Main/<split>.txt

Labels follow GluonCV's ``VOCDetection``: (N, 6) float32 ``[xmin, ymin, xmax, ymax,
class, difficult]`` with VOC's 1-based pixel coordinates shifted to 0-based. Unlike
GluonCV, which asserts on the first odd box, annotations are repaired or skipped and
counted (see :mod:`.imageio`).
"""
import collections
import logging
import os
import xml.etree.ElementTree as ET

import numpy as np

from .base import DetectionDataset, clip_boxes
from .imageio import read_image
from .registry import DatasetKind, register_dataset

__all__ = ['VOCLayoutDetection', 'VOC_CLASSES', 'read_split', 'discover_classes',
           'class_counts', 'rare_classes', 'build_custom']

logger = logging.getLogger(__name__)

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
               'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


def read_split(root, split):
    """Image ids listed in ``root/ImageSets/Main/<split>.txt``.

    Raises
    ------
    FileNotFoundError
        One line saying which folder or file was expected.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError("dataset folder not found: expected a VOC-layout directory "
                                "'{}' (with Annotations/, JPEGImages/, ImageSets/Main/)"
                                .format(root))
    path = os.path.join(root, 'ImageSets', 'Main', split + '.txt')
    if not os.path.isfile(path):
        raise FileNotFoundError("split file not found: expected '{}' listing one image id "
                                "per line".format(path))
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def _parse_xml(path):
    """(width, height or None, [(name, difficult, [xmin, ymin, xmax, ymax] or None)])."""
    root = ET.parse(path).getroot()
    size = root.find('size')
    try:
        dims = (float(size.find('width').text), float(size.find('height').text))
        dims = dims if min(dims) > 0 else None
    except (AttributeError, TypeError, ValueError):
        dims = None
    objects = []
    for obj in root.iter('object'):
        name = (obj.findtext('name') or '').strip()
        difficult = obj.findtext('difficult')
        box = obj.find('bndbox')
        try:
            coords = [float(box.find(tag).text) - 1 for tag in ('xmin', 'ymin', 'xmax', 'ymax')]
        except (AttributeError, TypeError, ValueError):
            coords = None
        objects.append((name, int(difficult) if (difficult or '').strip().isdigit() else 0,
                        coords))
    return dims, objects


ClassCount = collections.namedtuple('ClassCount', 'objects files example')


def class_counts(items):
    """{name: ClassCount(objects, files, example)} over the annotations of `items`
    ((root, id) pairs): how many objects carry each name, in how many annotation files
    it appears, and the first such file."""
    counts = {}
    for root, image_id in items:
        path = _xml_path(root, image_id)
        try:
            names = [n for n, _, _ in _parse_xml(path)[1] if n]
        except (OSError, ET.ParseError):
            continue  # reported when the dataset itself is built
        for name in set(names):
            old = counts.get(name, ClassCount(0, 0, path))
            counts[name] = ClassCount(old.objects + names.count(name), old.files + 1,
                                      old.example)
    return {name: counts[name] for name in sorted(counts)}


def discover_classes(items):
    """Sorted class names found in the annotations of `items` ((root, id) pairs)."""
    names = tuple(class_counts(items))
    if not names:
        raise ValueError('no object names found in the annotations of {} images; pass '
                         'classes=[...] explicitly'.format(len(items)))
    return names


def _xml_path(root, image_id):
    return os.path.join(root, 'Annotations', image_id + '.xml')


def _image_path(root, image_id):
    """JPEGImages/<id>.jpg, or another common extension when a custom set uses one."""
    base = os.path.join(root, 'JPEGImages', image_id)
    for ext in ('.jpg', '.jpeg', '.png', '.bmp', '.JPG', '.PNG'):
        if os.path.exists(base + ext):
            return base + ext
    return base + '.jpg'  # reported as unreadable when first loaded


class VOCLayoutDetection(DetectionDataset):
    """Detection samples from one or more VOC-layout folders.

    Parameters
    ----------
    items : sequence of (str, str)
        (folder, image id) pairs, e.g. from :func:`read_split`.
    classes : sequence of str
        Class names; objects with other names are dropped (and counted).
    strict, train
        See :class:`.base.DetectionDataset`. An annotation without any object is a
        background image (trained on); a training set skips an image whose objects were
        all dropped (unknown names, unusable boxes).
    """

    def __init__(self, items, classes, strict=False, train=True):
        super().__init__(classes, strict=strict, train=train)
        self._index = {name: i for i, name in enumerate(self.classes)}
        for root, image_id in items:
            self._add(root, image_id)
        if self.bad_samples.count:
            logger.warning('%s: %d images kept; %s', type(self).__name__, len(self),
                           self.bad_samples.summary())

    def _add(self, root, image_id):
        xml = _xml_path(root, image_id)
        try:
            dims, objects = _parse_xml(xml)
        except OSError:
            return self.bad_samples.report(xml, 'missing annotation')
        except ET.ParseError as err:
            return self.bad_samples.report(xml, 'malformed XML', str(err))
        label = self._label(xml, objects)
        if dims is not None:
            label = clip_boxes(label, dims[0], dims[1], xml, self.bad_samples)
        if len(label) == 0 and objects and self.train:
            # objects were annotated but none is usable: not a background image
            return self.bad_samples.report(xml, 'no valid boxes')
        if len(label) == 0 and not self.train:
            label = np.full((1, 6), -1, np.float32)  # metrics skip class -1
        self._names.append(xml)
        self._images.append(_image_path(root, image_id))
        self._labels.append(label)
        self._sizes.append(dims or (64, 64))
        return None

    def _label(self, xml, objects):
        rows = []
        for name, difficult, coords in objects:
            if name not in self._index:
                self.bad_samples.report(xml, 'unknown class dropped', repr(name))
            elif coords is None:
                self.bad_samples.report(xml, 'malformed box dropped')
            else:
                rows.append(coords + [self._index[name], difficult])
        return np.array(rows, dtype=np.float32).reshape(-1, 6)

    def _read(self, idx):
        return read_image(self._images[idx], self.bad_samples)

    def image_path(self, idx):
        return self._images[idx]


def rare_classes(counts, num_files):
    """Names seen in at most max(2, 1% of the files) files while another name is seen in
    at least 10x as many: with real classes that does not happen by chance.

    Parameters
    ----------
    counts : dict
        {name: ClassCount} from :func:`class_counts`.
    num_files : int
        Annotation files looked at.
    """
    if not counts:
        return []
    most = max(c.files for c in counts.values())
    limit = max(2, num_files // 100)
    return [n for n, c in counts.items() if c.files <= limit and most >= 10 * c.files]


def _plural(count, noun):
    return '{} {}{}'.format(count, noun, '' if count == 1 else 's')


def _classes_from_annotations(items):
    """The sorted names in the annotations, logged with their counts; a name seen in
    very few files next to common ones (a misspelling, usually) gets a warning."""
    counts = class_counts(items)
    if not counts:
        raise ValueError('no object names found in the annotations of {} images; pass '
                         'classes=[...] (--classes a,b,c on the command line)'
                         .format(len(items)))
    names = tuple(counts)
    logger.info('classes read from the annotations: %s', ', '.join(
        '{} ({} in {})'.format(n, _plural(c.objects, 'object'), _plural(c.files, 'file'))
        for n, c in counts.items()))
    rare = rare_classes(counts, len(items))
    for name in rare:
        common = max(counts, key=lambda n: counts[n].files)
        logger.warning(
            "class '%s' appears in only %d of %d annotation files (first: %s) while '%s' "
            "appears in %d: a misspelt name? Fix the annotation, or name the classes with "
            "--classes %s (objects of other names are then dropped and counted)", name,
            counts[name].files, len(items), counts[name].example, common,
            counts[common].files, ','.join(n for n in names if n not in rare))
    return names


def _voc_items(root, year_sets):
    items = []
    for year_set in ([year_sets] if isinstance(year_sets, str) else year_sets):
        year, _, image_set = str(year_set).partition('_')
        if not image_set:
            raise ValueError("VOC split '{}' must look like '2007_trainval'".format(year_set))
        folder = os.path.join(root, 'VOC' + year)
        items += [(folder, image_id) for image_id in read_split(folder, image_set)]
    return items


def _build_voc(options):
    classes = tuple(options.classes) if options.classes else VOC_CLASSES
    train_split, val_split = options.splits
    return (VOCLayoutDetection(_voc_items(options.root, train_split), classes,
                               options.strict, train=True),
            VOCLayoutDetection(_voc_items(options.root, val_split), classes,
                               options.strict, train=False))


def build_custom(options):
    """Training and validation sets of one VOC-layout folder (``options.root``); classes
    from ``options.classes`` or, sorted, from the annotations."""
    train_split, val_split = options.splits
    train_items = [(options.root, i) for i in read_split(options.root, train_split)]
    val_items = [(options.root, i) for i in read_split(options.root, val_split)]
    classes = options.classes or _classes_from_annotations(train_items + val_items)
    return (VOCLayoutDetection(train_items, classes, options.strict, train=True),
            VOCLayoutDetection(val_items, classes, options.strict, train=False))


register_dataset(DatasetKind(
    'voc', _build_voc, help='Pascal VOC devkit (VOC2007 + VOC2012)',
    layout='root/VOC2007, root/VOC2012 (VOCdevkit)', reads=('--dataset-root',),
    default_root=os.path.join('~', '.mxnet', 'datasets', 'voc'),
    splits=(('2007_trainval', '2012_trainval'), ('2007_test',)), classes="VOC's 20",
    model_suffix='voc'))
register_dataset(DatasetKind(
    'custom', build_custom, help='a Pascal VOC-layout folder (LabelImg, CVAT "Pascal VOC")',
    layout='root/Annotations/*.xml, root/JPEGImages/, root/ImageSets/Main/{train,val}.txt',
    reads=('--dataset-root', '--classes'), needs=('--dataset-root',),
    classes='--classes, else the sorted names in the XML files'))
