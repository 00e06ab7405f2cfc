"""The detection dataset base: samples as (RGB uint8 NumPy image, float32 label).

Subclasses list their samples at construction (labels already validated and repaired)
and only decode images in ``__getitem__``. A sample whose image turns out to be
unusable mid-epoch never crashes training: a training set returns the next usable
sample instead (deterministically), a validation set returns a mid-gray image of the
recorded size with the original labels (keeping the order evaluation metrics rely on).
A sample without objects is a background image: its label has no rows (training) or
one ``-1`` dummy row (validation, which the metrics skip).
"""
import logging
import os

import mxnet as mx
import numpy as np

from .imageio import BadSampleLog, read_image

__all__ = ['DetectionDataset', 'ListedDetection', 'clip_boxes', 'is_background']

logger = logging.getLogger(__name__)

_MAX_REPLACEMENTS = 50


def is_background(label):
    """Whether `label` has no object: no rows (a training background), or only the
    ``-1`` dummy row validation sets give such images."""
    return len(label) == 0 or bool((label[:, 4] < 0).all())


def clip_boxes(label, width, height, name, log):
    """Clip boxes to the image, drop the unusable ones; problems are recorded in `log`.

    A dropped box is recorded with its cause: ``xmin > xmax`` or ``ymin > ymax`` (the
    corners swapped or mistyped), a zero-area box (a corner repeated), or a box outside
    the image (nothing left after clipping).

    Parameters
    ----------
    label : numpy.ndarray, (N, 5+) float32
    width, height : float
        Image size in pixels.
    """
    if label.size == 0:
        return label
    clipped = label.copy()
    clipped[:, (0, 2)] = np.clip(clipped[:, (0, 2)], 0, width)
    clipped[:, (1, 3)] = np.clip(clipped[:, (1, 3)], 0, height)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    if not np.array_equal(clipped[keep], label[keep]):
        log.report(name, 'box clipped to image')
    causes = [
        ('box with xmin > xmax dropped', label[:, 0] > label[:, 2]),
        ('box with ymin > ymax dropped', label[:, 1] > label[:, 3]),
        ('zero-area box dropped', (label[:, 0] == label[:, 2]) | (label[:, 1] == label[:, 3])),
        ('box outside the image dropped', np.ones(len(label), bool)),
    ]
    dropped = ~keep
    for reason, mask in causes:
        hit = dropped & mask
        if hit.any():
            log.report(name, reason, '{} of {}'.format(int(hit.sum()), len(keep)))
            dropped &= ~hit
    return clipped[keep]


class DetectionDataset(mx.gluon.data.Dataset):
    """Base of all datasets here. Subclasses implement :meth:`_read` and fill
    ``self._names`` (one per sample, used in messages) and ``self._labels``.

    Parameters
    ----------
    classes : sequence of str
    strict : bool
        Fail on the first bad sample (naming the file) instead of repairing/skipping.
    train : bool
        Training set: replace unreadable samples by the next usable one. Else keep the
        sample order intact and substitute a gray image.
    """

    def __init__(self, classes, strict=False, train=True):
        self._classes = tuple(classes)
        self.bad_samples = BadSampleLog(strict=strict)
        self.train = bool(train)
        self._names, self._labels, self._sizes = [], [], []
        self._images = []  # image files, one per sample (datasets of files)
        self.image_cache = None  # an ImageCache (see image_cache.enable_cache), or None

    @property
    def classes(self):
        return self._classes

    @property
    def num_class(self):
        return len(self._classes)

    @property
    def bad_sample_count(self):
        """Distinct bad samples seen so far (this process plus merged worker records)."""
        return self.bad_samples.count

    def __len__(self):
        return len(self._names)

    def background_count(self):
        """How many samples have no object (background images)."""
        return sum(1 for label in self._labels if is_background(label))

    def label(self, idx):
        """The label (N, 5+) float32 of sample `idx`, without decoding its image."""
        return self._labels[idx].copy()

    def __getitem__(self, idx):
        if not 0 <= idx < len(self):
            raise IndexError('sample {} out of range for {} samples'.format(idx, len(self)))
        for step in range(_MAX_REPLACEMENTS if self.train else 1):
            j = (idx + step) % len(self)
            sample = self._load(j)
            if sample is not None:
                return sample
        if self.train:
            raise RuntimeError('{} consecutive unusable images from {}; is the image folder '
                               'readable?'.format(_MAX_REPLACEMENTS, self._names[idx]))
        width, height = self._sizes[idx] if self._sizes else (64, 64)
        return np.full((int(height), int(width), 3), 128, np.uint8), self.label(idx)

    def _load(self, idx):
        img = self._cached_read(idx)
        if img is None:
            return None
        height, width = img.shape[:2]
        label = self.label(idx)
        if self.train and len(label):  # an empty label is a background image: kept
            label = clip_boxes(label, width, height, self._names[idx], self.bad_samples)
            if len(label) == 0:
                self.bad_samples.report(self._names[idx], 'no valid boxes')
                return None
        return img, label

    def _cached_read(self, idx):
        """`_read` through the image cache when there is one (decoded once per run)."""
        cache = self.image_cache
        if cache is None:
            return self._read(idx)
        img = cache.get(idx)
        if img is not None and self._on_cache_hit(idx, img):
            return img
        if cache.is_bad(idx):
            return None
        img = self._read(idx)
        if img is None:
            cache.mark_bad(idx)
        else:
            cache.put(idx, img)
        return img

    def _on_cache_hit(self, idx, img):  # pylint: disable=unused-argument
        """Whatever `_read` sets besides the image (RecordIO: the label); False: re-read."""
        return True

    def _read(self, idx):
        """(H, W, 3) uint8 RGB image of sample `idx`, or None if unusable (recorded)."""
        raise NotImplementedError

    # ----- what the start-up scan and the dataset report need (scan.py, report.py) ---
    def sample_name(self, idx):
        """The file problems of sample `idx`'s labels are named by (its annotation file,
        or its image when the labels live elsewhere)."""
        return self._names[idx]

    def image_name(self, idx):
        """The name image problems of sample `idx` are recorded under (its file)."""
        return self._images[idx]

    def read_encoded(self, idx):
        """The encoded image of sample `idx`, (N,) uint8; raises OSError."""
        return np.fromfile(self._images[idx], dtype=np.uint8)

    # ----- what the image cache needs ------------------------------------------------
    def image_sizes(self):
        """(width, height) of each sample as annotated; None where unknown."""
        return list(self._sizes) if len(self._sizes) == len(self) else [None] * len(self)

    def decoded_size(self, idx):
        """(width, height) of sample `idx` by decoding it (None if unusable)."""
        img = self._read(idx)
        return None if img is None else (img.shape[1], img.shape[0])

    def source_files(self):
        """The files the images come from (their paths, sizes and times key a disk cache)."""
        return list(getattr(self, '_images', []))

    def cache_folder(self):
        """Where a disk cache of this dataset is written: the dataset's folder."""
        files = self.source_files()
        return os.path.dirname(os.path.dirname(os.path.abspath(files[0]))) if files \
            else os.getcwd()


class ListedDetection(DetectionDataset):
    """Samples added one by one: image files with their labels already in pixels (the
    COCO JSON and YOLO txt readers parse their files into this).

    Parameters
    ----------
    classes : sequence of str
    strict, train
        See :class:`DetectionDataset`.
    """

    def add(self, path, label, size):
        """Add one sample.

        Parameters
        ----------
        path : str
            Image file.
        label : numpy.ndarray, (N, 6) float32
            ``[xmin, ymin, xmax, ymax, class, difficult]`` in pixels, clipped to the
            image. N may be 0: a background image (a validation set stores the ``-1``
            dummy row the metrics skip).
        size : (float, float)
            The image's (width, height).
        """
        label = np.asarray(label, np.float32).reshape(-1, 6)
        if len(label) == 0 and not self.train:
            label = np.full((1, 6), -1, np.float32)
        self._names.append(path)
        self._images.append(path)
        self._labels.append(label)
        self._sizes.append(size)

    def _read(self, idx):
        return read_image(self._images[idx], self.bad_samples)

    def image_path(self, idx):
        return self._images[idx]
