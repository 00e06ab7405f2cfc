"""Detection samples from RecordIO files made by MXNet's ``im2rec`` (``.rec`` + ``.idx``).

Each record's label is im2rec's detection layout: ``[header_len, object_width, ...
header extras ..., cls, xmin, ymin, xmax, ymax, (extras), cls, ...]`` with coordinates
normalised to [0, 1] (the default) or in pixels. Samples come out like GluonCV's
``RecordFileDetection``: (N, object_width) ``[xmin, ymin, xmax, ymax, cls, extras...]``
in pixels. A record without objects is a background image (trained on); a training
record whose objects all have unknown classes is skipped. The record file is reopened in
each process, so forked loader workers never share a file position.
"""
import logging
import os

import mxnet as mx
import numpy as np

from .base import DetectionDataset
from .imageio import decode_image
from .registry import DatasetKind, register_dataset

__all__ = ['RecordDetection', 'parse_record_label']

logger = logging.getLogger(__name__)


def parse_record_label(raw, width, height, normalized=True):
    """im2rec label vector -> (N, K) float32 ``[xmin, ymin, xmax, ymax, cls, ...]``.

    Raises
    ------
    ValueError
        If the vector does not have im2rec's detection layout.
    """
    raw = np.asarray(raw, dtype=np.float32).ravel()
    if raw.size < 2:
        raise ValueError('label of {} values has no detection header'.format(raw.size))
    header, width_per_object = int(raw[0]), int(raw[1])
    body = raw[header:]
    if header < 2 or width_per_object < 5 or body.size % width_per_object:
        raise ValueError('label header {} / object width {} does not fit {} values'
                         .format(header, width_per_object, raw.size))
    objects = body.reshape(-1, width_per_object)
    label = np.concatenate([objects[:, 1:5], objects[:, :1], objects[:, 5:]], axis=1)
    if normalized:
        label[:, (0, 2)] *= width
        label[:, (1, 3)] *= height
    return label


class RecordDetection(DetectionDataset):
    """One ``.rec`` file with its ``.idx`` index.

    Parameters
    ----------
    rec_path : str
        Path to the ``.rec`` file; the ``.idx`` file must sit next to it.
    classes : sequence of str
        Class names (record files do not store them).
    coord_normalized : bool
        Whether boxes in the records are fractions of the image size (im2rec default).
    strict, train
        See :class:`.base.DetectionDataset`.
    """

    def __init__(self, rec_path, classes, strict=False, train=True, coord_normalized=True):
        super().__init__(classes, strict=strict, train=train)
        self._rec = os.path.expanduser(rec_path)
        self._idx = os.path.splitext(self._rec)[0] + '.idx'
        for path in (self._rec, self._idx):
            if not os.path.isfile(path):
                raise FileNotFoundError("record file not found: expected '{}' (make it with "
                                        "MXNet's tools/im2rec.py --pack-label)".format(path))
        self._normalized = bool(coord_normalized)
        self._handle, self._pid = None, None
        keys = self._open().keys
        self._keys = list(keys)
        self._names = ['{}#{}'.format(self._rec, k) for k in self._keys]
        self._labels = [None] * len(self._keys)

    def _open(self):
        if self._handle is None or self._pid != os.getpid():
            self._handle = mx.recordio.MXIndexedRecordIO(self._idx, self._rec, 'r')
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self):  # file handles do not travel to other processes
        state = dict(self.__dict__)
        state['_handle'] = None
        return state

    def _unpack(self, idx):
        header, payload = mx.recordio.unpack(self._open().read_idx(self._keys[idx]))
        return header.label, np.frombuffer(payload, dtype=np.uint8)

    def label(self, idx):
        """Label of record `idx`, known once its image was read (boxes may be stored as
        fractions of the image size); a ``-1`` dummy row before that or if unusable."""
        if self._labels[idx] is None:
            return np.full((1, 5), -1, np.float32)
        return self._labels[idx].copy()

    def source_files(self):
        return [self._rec, self._idx]

    def image_name(self, idx):
        return self._names[idx]

    def read_encoded(self, idx):
        return self._unpack(idx)[1]

    def cache_folder(self):
        return os.path.dirname(os.path.abspath(self._rec))

    def _on_cache_hit(self, idx, img):
        """The label needs the record's header (not its pixels) in this process."""
        if self._labels[idx] is not None:
            return True
        raw, _ = self._unpack(idx)
        return self._parse_label(idx, raw, img.shape[1], img.shape[0])

    def _read(self, idx):
        raw, buf = self._unpack(idx)
        img = decode_image(buf, self._names[idx], self.bad_samples)
        if img is None or not self._parse_label(idx, raw, img.shape[1], img.shape[0]):
            return None
        return img

    def _parse_label(self, idx, raw, width, height):
        """Set the label of record `idx` from its header; False if malformed (recorded)."""
        try:
            label = parse_record_label(raw, width, height, self._normalized)
        except ValueError as err:
            self.bad_samples.report(self._names[idx], 'malformed label', str(err))
            return False
        known = (label[:, 4] >= 0) & (label[:, 4] < self.num_class)
        if not known.all():
            self.bad_samples.report(self._names[idx], 'unknown class dropped',
                                    'ids {}'.format(sorted(set(label[~known, 4].tolist()))))
        if self.train and len(label) and not known.any():  # objects, none usable
            self.bad_samples.report(self._names[idx], 'no valid boxes')
            return False
        self._labels[idx] = label[known]  # no objects at all: a background image
        return True

    def background_count(self):
        """Unknown before the records are read (their labels live in the records)."""
        return None


def _build_rec(options):
    classes = options.classes
    if not classes:
        names_file = os.path.join(options.root, 'classes.txt')
        if not os.path.isfile(names_file):
            raise ValueError("record files do not store class names: pass classes=[...] or "
                             "write them one per line to '{}'".format(names_file))
        with open(names_file) as f:
            classes = [line.strip() for line in f if line.strip()]
    train_split, val_split = options.splits
    return (RecordDetection(os.path.join(options.root, train_split + '.rec'), classes,
                            options.strict, True),
            RecordDetection(os.path.join(options.root, val_split + '.rec'), classes,
                            options.strict, False))


register_dataset(DatasetKind(
    'rec', _build_rec, help="RecordIO files made by MXNet's im2rec",
    layout='root/{train,val}.rec + .idx, class names in root/classes.txt or --classes',
    reads=('--dataset-root', '--classes'), needs=('--dataset-root',),
    classes='--classes, else the lines of root/classes.txt'))
