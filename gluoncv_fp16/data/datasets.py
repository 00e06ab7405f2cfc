"""`build_datasets(name, ...)`: the training and validation sets the trainer asks for.

=========== ============================================ ===============================
name        root (default)                               splits (default: train, val)
=========== ============================================ ===============================
voc         ~/.mxnet/datasets/voc (VOCdevkit layout:     ('2007_trainval', '2012_trainval'),
            root/VOC2007, root/VOC2012)                  ('2007_test',)
coco        ~/.mxnet/datasets/coco                       'instances_train2017',
                                                         'instances_val2017'
custom      a VOC-layout folder (required)               'train', 'val'
synthetic   ~/.cache/gluoncv_fp16/synthetic (generated   'train', 'val'
            once)
rec         a folder with <split>.rec/.idx (required)    'train', 'val'
=========== ============================================ ===============================

Samples are ``(img, label)``: img an (H, W, 3) uint8 RGB **NumPy** array, label an
(N, 5+) float32 NumPy array ``[xmin, ymin, xmax, ymax, class, ...]`` in pixels (VOC
layouts add a ``difficult`` column, as GluonCV). Each dataset has ``classes`` and a
``bad_samples`` log (``bad_sample_count``, ``bad_samples.summary()``).
"""
import collections
import logging
import os

from .coco import COCODetection
from .recordio import RecordDetection
from .synthetic import _MARKER as _SYNTHETIC_MARKER
from .synthetic import SHAPE_CLASSES, ensure_synthetic
from .voc import VOC_CLASSES, VOCLayoutDetection, class_counts, read_split

__all__ = ['build_datasets', 'DATASETS', 'default_root', 'bad_sample_summary',
           'bad_sample_scalars', 'rare_classes']

logger = logging.getLogger(__name__)

DATASETS = ('voc', 'coco', 'custom', 'synthetic', 'rec')
_DEFAULT_ROOTS = {
    'voc': os.path.join('~', '.mxnet', 'datasets', 'voc'),
    'coco': os.path.join('~', '.mxnet', 'datasets', 'coco'),
    'synthetic': os.path.join('~', '.cache', 'gluoncv_fp16', 'synthetic'),
}
_DEFAULT_SPLITS = {
    'voc': (('2007_trainval', '2012_trainval'), ('2007_test',)),
    'coco': ('instances_train2017', 'instances_val2017'),
    'custom': ('train', 'val'),
    'synthetic': ('train', 'val'),
    'rec': ('train', 'val'),
}


def default_root(name):
    """Where `name` is looked for when no root is given (None: a root is required)."""
    root = _DEFAULT_ROOTS.get(name)
    return None if root is None else os.path.expanduser(root)


def build_datasets(name, root=None, classes=None, strict=False, splits=None):
    """Build ``(train_dataset, val_dataset, classes)`` for dataset `name`.

    Parameters
    ----------
    name : str
        One of 'voc', 'coco', 'custom', 'synthetic', 'rec'.
    root : str, optional
        Dataset folder; see the module table for defaults.
    classes : sequence of str, optional
        Class names. Default: the dataset's own (VOC's 20, COCO's 80, the synthetic
        shapes); for 'custom' the sorted names found in the annotations; for 'rec' the
        lines of ``root/classes.txt``.
    strict : bool
        Fail on the first bad sample, naming the file, instead of repairing/skipping.
    splits : (train, val), optional
        Split names (for 'voc', each a sequence of ``'<year>_<set>'``).

    Raises
    ------
    ValueError
        Unknown `name`, or classes cannot be determined.
    FileNotFoundError
        A folder or split file is missing (the message names the expected path).
    """
    key = str(name).lower()
    if key not in DATASETS:
        raise ValueError("unknown dataset '{}'; choose one of {}".format(name,
                                                                        ', '.join(DATASETS)))
    root = os.path.expanduser(root) if root else default_root(key)
    if root is None:
        raise ValueError("dataset '{}' needs a root folder (e.g. --dataset-root /data/mine)"
                         .format(key))
    train_split, val_split = splits if splits is not None else _DEFAULT_SPLITS[key]
    builder = {'voc': _voc, 'coco': _coco, 'custom': _custom, 'synthetic': _synthetic,
               'rec': _rec}[key]
    train, val = builder(root, classes, strict, train_split, val_split)
    logger.info("dataset '%s' at %s: %d training, %d validation images, %d classes", key,
                root, len(train), len(val), len(train.classes))
    return train, val, list(train.classes)


def bad_sample_summary(*datasets):
    """One log line per dataset with its bad-sample counts."""
    return '; '.join('{}: {}'.format(type(d).__name__, d.bad_samples.summary())
                     for d in datasets)


def bad_sample_scalars(*datasets):
    """What the metrics record adds to each epoch's row: ``'bad_samples'``, the distinct
    bad samples found so far in `datasets` (at construction, by the start-up scan, and
    while reading, in any process), and ``'bad_sample_kinds'``, their reasons as text."""
    counts = collections.Counter()
    for dataset in datasets:
        counts.update(dataset.bad_samples.counts())
    return {'bad_samples': sum(counts.values()),
            'bad_sample_kinds': ', '.join('{} x {}'.format(n, reason)
                                          for reason, n in sorted(counts.items()))}


def _voc_items(root, year_sets):
    items = []
    for year_set in ([year_sets] if isinstance(year_sets, str) else year_sets):
        year, _, image_set = str(year_set).partition('_')
        if not image_set:
            raise ValueError("VOC split '{}' must look like '2007_trainval'".format(year_set))
        folder = os.path.join(root, 'VOC' + year)
        items += [(folder, image_id) for image_id in read_split(folder, image_set)]
    return items


def _voc(root, classes, strict, train_split, val_split):
    classes = tuple(classes) if classes else VOC_CLASSES
    return (VOCLayoutDetection(_voc_items(root, train_split), classes, strict, train=True),
            VOCLayoutDetection(_voc_items(root, val_split), classes, strict, train=False))


def _custom(root, classes, strict, train_split, val_split):
    train_items = [(root, i) for i in read_split(root, train_split)]
    val_items = [(root, i) for i in read_split(root, val_split)]
    if not classes:
        classes = _classes_from_annotations(train_items + val_items)
    return (VOCLayoutDetection(train_items, classes, strict, train=True),
            VOCLayoutDetection(val_items, classes, strict, train=False))


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


def _plural(count, noun):
    return '{} {}{}'.format(count, noun, '' if count == 1 else 's')


def rare_classes(counts, num_files):
    """Names seen in at most max(2, 1% of the files) files while another name is seen in
    at least 10x as many: with real classes that does not happen by chance.

    Parameters
    ----------
    counts : dict
        {name: ClassCount} from :func:`.voc.class_counts`.
    num_files : int
        Annotation files looked at.
    """
    if not counts:
        return []
    most = max(c.files for c in counts.values())
    limit = max(2, num_files // 100)
    return [n for n, c in counts.items() if c.files <= limit and most >= 10 * c.files]


def _synthetic(root, classes, strict, train_split, val_split):
    # The default cache follows the current defaults (regenerated when they change); a
    # folder the user names that already holds a complete set is used as it is -- never
    # overwritten because its settings differ from today's defaults.
    if os.path.abspath(root) == os.path.abspath(default_root('synthetic')) or \
            not os.path.isfile(os.path.join(root, _SYNTHETIC_MARKER)):
        ensure_synthetic(root)
    return _custom(root, classes or SHAPE_CLASSES, strict, train_split, val_split)


def _coco(root, classes, strict, train_split, val_split):
    return (COCODetection(root, train_split, classes, strict, train=True),
            COCODetection(root, val_split, classes, strict, train=False))


def _rec(root, classes, strict, train_split, val_split):
    if not classes:
        names_file = os.path.join(root, 'classes.txt')
        if not os.path.isfile(names_file):
            raise ValueError("record files do not store class names: pass classes=[...] or "
                             "write them one per line to '{}'".format(names_file))
        with open(names_file) as f:
            classes = [line.strip() for line in f if line.strip()]
    return (RecordDetection(os.path.join(root, train_split + '.rec'), classes, strict, True),
            RecordDetection(os.path.join(root, val_split + '.rec'), classes, strict, False))
