"""`build_datasets(name, ...)`: the training and validation sets the trainer asks for.

The kinds of dataset (``voc``, ``coco``, ``custom``, ``synthetic``, ``rec``,
``coco-json``, ``yolo``) are declared in the :mod:`.registry` by their reader modules,
imported here; :func:`dataset_table` renders them for the docs.

Samples are ``(img, label)``: img an (H, W, 3) uint8 RGB **NumPy** array, label an
(N, 5+) float32 NumPy array ``[xmin, ymin, xmax, ymax, class, ...]`` in pixels (VOC
layouts add a ``difficult`` column, as GluonCV). A training image without objects has an
(0, 5+) label: it is a background image and is trained on (objectness negatives only).
Each dataset has ``classes`` and a ``bad_samples`` log (``bad_sample_count``,
``bad_samples.summary()``).
"""
import collections
import logging
import os

# Each reader module registers its kinds when imported; this order is the order of the
# --dataset choices.
from . import voc, coco, synthetic, recordio, coco_json, yolo_txt  # noqa: F401
from .registry import DatasetOptions, dataset_kind, dataset_kinds, dataset_names
from .voc import rare_classes

__all__ = ['build_datasets', 'DATASETS', 'default_root', 'bad_sample_summary',
           'bad_sample_scalars', 'rare_classes', 'background_counts', 'dataset_table']

logger = logging.getLogger(__name__)

DATASETS = dataset_names()


def default_root(name):
    """Where `name` is looked for when no root is given (None: a root is required)."""
    root = dataset_kind(name).default_root
    return None if root is None else os.path.expanduser(root)


def build_datasets(name, root=None, classes=None, strict=False, splits=None, **files):
    """Build ``(train_dataset, val_dataset, classes)`` for dataset `name`.

    Parameters
    ----------
    name : str
        A registered kind (`DATASETS`).
    root : str, optional
        Dataset folder; default: the kind's (see docs/data.md).
    classes : sequence of str, optional
        Class names. Default: the dataset's own (VOC's 20, COCO's 80, the synthetic
        shapes, the names in a COCO JSON or data.yaml file); for 'custom' the sorted
        names found in the annotations; for 'rec' the lines of ``root/classes.txt``.
    strict : bool
        Fail on the first bad sample, naming the file, instead of repairing/skipping.
    splits : (train, val), optional
        Split names (for 'voc', each a sequence of ``'<year>_<set>'``).
    **files
        ``train_json``, ``val_json``, ``image_root`` (coco-json) and ``data`` (yolo):
        the files of the formats that are described by one.

    Raises
    ------
    ValueError
        Unknown `name`, classes cannot be determined, or a description file cannot be
        used (:class:`~gluoncv_fp16.errors.DatasetError`, naming the file).
    FileNotFoundError
        A folder or split file is missing (the message names the expected path).
    """
    kind = dataset_kind(name)
    for flag in kind.needs:
        key = flag.lstrip('-').replace('-', '_')
        if not (root or kind.default_root if key == 'dataset_root' else files.get(key)):
            raise ValueError("dataset '{}' needs {} (on the command line: {} {})".format(
                kind.name, key, flag, '/data/mine' if key == 'dataset_root' else 'FILE'))
    root = os.path.expanduser(root) if root else default_root(kind.name)
    options = DatasetOptions(root=root, classes=tuple(classes) if classes else None,
                             strict=strict, splits=splits if splits else kind.splits,
                             **{k: os.path.expanduser(v) if v else None
                                for k, v in files.items()})
    train, val = kind.build(options)
    backgrounds = background_counts(train, val)
    logger.info("dataset '%s' at %s: %d training images (%s), %d validation images (%s), "
                "%d classes", kind.name, root or options.train_json or options.data,
                len(train), _backgrounds_text(backgrounds[0], len(train)), len(val),
                _backgrounds_text(backgrounds[1], len(val)), len(train.classes))
    return train, val, list(train.classes)


def background_counts(*datasets):
    """Images without objects in each dataset (None where unknown before reading, as in
    record files)."""
    return tuple(d.background_count() for d in datasets)


def _backgrounds_text(count, total):
    if count is None:
        return 'backgrounds counted when read'
    return '{} background{}, {:.0%}'.format(count, '' if count == 1 else 's',
                                             count / max(total, 1))


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


def dataset_table():
    """The registered kinds as a Markdown table (docs/data.md)."""
    rows = ['| `--dataset` | reads | flags | classes | default root |', '|---|---|---|---|---|']
    for kind in dataset_kinds():
        flags = ', '.join('`{}`{}'.format(f, ' (required)' if f in kind.needs else '')
                          for f in kind.reads)
        rows.append('| `{}` | {}: {} | {} | {} | {} |'.format(
            kind.name, kind.help, kind.layout, flags or '-', kind.classes,
            '`{}`'.format(kind.default_root) if kind.default_root else '-'))
    return '\n'.join(rows)
