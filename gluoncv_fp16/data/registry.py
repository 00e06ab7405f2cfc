"""The dataset registry: each kind of dataset is declared once, by its reader module.

A :class:`DatasetKind` says everything the rest of the package needs to know about one
``--dataset`` value: how to build the training and validation sets, where they are by
default, which command-line flags it reads and which it needs, its where its class
names come from, the GluonCV model suffix it trains (``voc``, ``coco`` or ``custom``) and a help
line. The ``--dataset`` choices, its help, the flag checks, the error listing the
kinds and the table in docs/data.md all come from here, so adding a format is one reader
module that ends with :func:`register_dataset` (and one import line in
:mod:`.datasets`).
"""
import dataclasses
from typing import Callable, Optional, Tuple

__all__ = ['DatasetKind', 'DatasetOptions', 'register_dataset', 'dataset_kind',
           'dataset_names', 'dataset_kinds', 'dataset_option_problems', 'DATASET_FLAGS']

# The flags a dataset kind may read, with what each gives (for the "needs" messages).
DATASET_FLAGS = {
    '--dataset-root': 'DIR',
    '--classes': 'a,b,c',
    '--train-json': 'FILE',
    '--val-json': 'FILE',
    '--image-root': 'DIR',
    '--data': 'FILE.yaml',
}


@dataclasses.dataclass(frozen=True)
class DatasetOptions:
    """What a builder receives: the dataset flags' values (None where not given).

    Attributes
    ----------
    root : str or None
        ``--dataset-root``, else the kind's default root (expanded).
    classes : tuple of str or None
        ``--classes``.
    strict : bool
        ``--strict-data``: fail on the first bad sample.
    splits : (train, val) or None
        Split names; None: the kind's defaults.
    train_json, val_json, image_root, data : str or None
        ``--train-json``, ``--val-json``, ``--image-root``, ``--data``.
    """
    root: Optional[str] = None
    classes: str = ''
    strict: bool = False
    splits: Optional[tuple] = None
    train_json: Optional[str] = None
    val_json: Optional[str] = None
    image_root: Optional[str] = None
    data: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class DatasetKind:
    """One ``--dataset`` value.

    Attributes
    ----------
    name : str
        What the user types after ``--dataset``.
    build : callable
        ``build(options: DatasetOptions) -> (train_set, val_set)``; raises
        FileNotFoundError or ValueError (a :class:`~gluoncv_fp16.errors.DatasetError`)
        with one line naming the file for input it cannot use.
    help : str
        One line: what the kind reads.
    layout : str
        The files it expects, for the reference table.
    reads : tuple of str
        The dataset flags (keys of `DATASET_FLAGS`) it uses; any other one given with
        it is refused, so that a flag never silently does nothing.
    needs : tuple of str
        The flags it cannot do without (a subset of `reads`).
    default_root : str or None
        Folder used when ``--dataset-root`` is not given ('~' expanded).
    splits : (train, val)
        Default split names.
    classes : str
        Where the class names come from, for the reference table.
    model_suffix : str
        GluonCV model name suffix trained on it: ``voc`` and ``coco`` build GluonCV's
        published class sets, ``custom`` the dataset's classes.
    pretrained_base : bool
        Whether runs start from the ImageNet backbone by default.
    coco_metrics : bool
        Evaluation reports pycocotools' AP, AP50, AP75 and AP by object size on it (the
        validation set stated in COCO's format), beside VOC07 mAP.
    gluoncv_coco : bool
        Read as GluonCV reads COCO: the validation set keeps its annotation file as a
        pycocotools ``coco`` with ``contiguous_id_to_json``, boxes with inclusive pixel
        ends; training validates with GluonCV's ``COCODetectionMetric`` and evaluation
        scores detections against that file (implies `coco_metrics`).
    """
    name: str
    build: Callable
    help: str
    layout: str = ''
    reads: Tuple[str, ...] = ()
    needs: Tuple[str, ...] = ()
    default_root: Optional[str] = None
    splits: tuple = ('train', 'val')
    classes: str = ''
    model_suffix: str = 'custom'
    pretrained_base: bool = True
    coco_metrics: bool = False
    gluoncv_coco: bool = False

    def __post_init__(self):
        unknown = [f for f in self.reads + self.needs if f not in DATASET_FLAGS]
        if unknown or not set(self.needs) <= set(self.reads):
            raise ValueError('dataset kind {!r}: flags {} are not dataset flags, or needed '
                             'but not read'.format(self.name, unknown or list(self.needs)))
        if self.gluoncv_coco and not self.coco_metrics:
            raise ValueError('dataset kind {!r}: gluoncv_coco implies coco_metrics'.format(
                self.name))


_KINDS = {}


def register_dataset(kind):
    """Add `kind` to the registry (once per name); returns it."""
    if kind.name in _KINDS:
        raise ValueError('dataset kind {!r} is registered twice'.format(kind.name))
    _KINDS[kind.name] = kind
    return kind


def dataset_names():
    """The registered ``--dataset`` values, in registration order."""
    return tuple(_KINDS)


def dataset_kinds():
    """The registered kinds, in registration order."""
    return tuple(_KINDS.values())


def dataset_kind(name):
    """The kind called `name` (case-insensitive).

    Raises
    ------
    ValueError
        Unknown name; the message lists the registered ones.
    """
    kind = _KINDS.get(str(name).lower())
    if kind is None:
        raise ValueError("unknown dataset '{}'; choose one of {}".format(
            name, ', '.join(_KINDS)))
    return kind


def dataset_option_problems(name, given):
    """One-line messages for dataset flags that do not fit ``--dataset name``.

    Parameters
    ----------
    name : str
        A registered kind.
    given : dict
        {flag: value} of the dataset flags (None or empty: not given).
    """
    kind = dataset_kind(name)
    for flag in kind.needs:
        if not given.get(flag):
            yield '--dataset {} needs {} {} ({})'.format(
                kind.name, flag, DATASET_FLAGS[flag], kind.help)
    for flag, value in given.items():
        if value and flag not in kind.reads:
            users = [k.name for k in _KINDS.values() if flag in k.reads]
            yield '{} does nothing with --dataset {}; it is read by --dataset {}'.format(
                flag, kind.name, ' / '.join(users))
