"""Pieces of the data flags that several commands declare (training, evaluation).

Each command declares its own fields (its defaults and help differ: training defaults to
the synthetic set, evaluation to what the checkpoint recorded); the reading of the typed
text and the checks of the value are these, so the commands cannot disagree on them.
Used from :mod:`gluoncv_fp16.train.config` and :mod:`gluoncv_fp16.cli`.
"""
import os

from .datasets import DATASETS

__all__ = ['class_names', 'repeated', 'classes_problem', 'dataset_problem',
           'dataset_root_problem', 'data_side_problem', 'num_workers_problem']


def class_names(text):
    """``'a, b,c'`` -> ``('a', 'b', 'c')``; None for no text (the names come from
    elsewhere: the annotations, the checkpoint)."""
    return tuple(c.strip() for c in text.split(',') if c.strip()) if text else None


def repeated(names):
    """The names listed more than once, sorted."""
    return sorted({n for n in names if list(names).count(n) > 1})


def classes_problem(names):
    """--classes naming a class twice (None: given nothing)."""
    if names is not None and repeated(names):
        return '--classes names {} more than once; each class needs one name'.format(
            repeated(names))
    return None


def dataset_problem(name, optional=False):
    """--dataset not one of the readers (None allowed when `optional`)."""
    if (optional and name is None) or name in DATASETS:
        return None
    return '--dataset {!r}: choose one of {}'.format(name, list(DATASETS))


def dataset_root_problem(root):
    """--dataset-root that is not a folder (None: the dataset's default folder)."""
    if root is None or os.path.isdir(root):
        return None
    return '--dataset-root {!r} does not exist or is not a folder'.format(root)


def data_side_problem(side, optional=False):
    """--data-shape that is not a positive multiple of 32 (YOLOv3's largest stride)."""
    if (optional and side is None) or (side is not None and side > 0 and side % 32 == 0):
        return None
    return ("--data-shape {} must be a positive multiple of 32 (YOLOv3's largest stride), "
            "e.g. 320, 416 or 608".format(side))


def num_workers_problem(workers):
    """-j/--num-workers below 0."""
    if workers >= 0:
        return None
    return ('-j/--num-workers must be >= 0 (0 loads data in the main process), got {}'
            .format(workers))
