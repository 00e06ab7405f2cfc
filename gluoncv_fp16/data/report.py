"""The dataset report: what the labels look like at the training size, and what is wrong.

Read before hours of training: images and boxes per class, boxes per image, background
images (no boxes), box sizes and aspect ratios at the data shape, and a picture of it
all (``<prefix>_labels.png``: class bars, box-centre heatmap, width/height scatter,
boxes per image). Problems are named by file:

=========================== ===== ===========================================================
kind                        error what it means
=========================== ===== ===========================================================
box outside the image       yes   a box reaches past the image border (readers clip it)
zero-area box               yes   no width or no height, or corners swapped (readers drop it)
duplicate box               yes   two boxes of one class on one image, corners within 1 px
class only in validation    yes   validation has boxes of a class training never shows
unreadable image            yes   missing, empty, truncated or undecodable image file
box under 2 px              no    narrower or lower than 2 px once resized to the data shape
=========================== ===== ===========================================================

Errors are what ``--strict-data`` refuses (one line, exit 2, before anything is
written); a box under 2 px can be a real, far-away object, so it is only a warning.
Boxes are scaled to the data shape as the transforms resize: each side on its own
(``width * data_shape / image width``).

The report reads :class:`Record` s, one per image: its path, size and valid boxes in
pixels. :func:`dataset_records` turns a dataset into records through the adapter
registered for its type (:func:`register_records`), so a new reader plugs in with one
small function. The problems a reader already repaired or skipped when it was built
(clipped, dropped boxes, unreadable images found by the start-up scan) are in its
``bad_samples`` log; the report names them too.
"""
import collections
import logging
import os

import numpy as np

from ..errors import ConfigError
from .base import DetectionDataset
from .recordio import RecordDetection, parse_record_label

__all__ = ['Record', 'Problem', 'SplitStats', 'DatasetReport', 'register_records',
           'dataset_records', 'build_report', 'startup_report', 'split_problems',
           'record_problems', 'ERROR_KINDS', 'WARNING_KINDS']

logger = logging.getLogger(__name__)

Record = collections.namedtuple('Record', 'path width height boxes classes')
Record.__doc__ = """One image's labels.

path : str
    The file problems are named by (the annotation file when there is one).
width, height : float or None
    Image size in pixels (None: unknown; the image is left out of size statistics).
boxes : numpy.ndarray, (N, 4) float
    ``[xmin, ymin, xmax, ymax]`` in pixels, as the reader keeps them.
classes : numpy.ndarray, (N,) int
    Class index of each box.
"""

Problem = collections.namedtuple('Problem', 'kind role path detail')

OUTSIDE, ZERO_AREA, DUPLICATE = 'box outside the image', 'zero-area box', 'duplicate box'
VAL_ONLY, UNREADABLE, TINY = ('class only in validation', 'unreadable image',
                              'box under 2 px')
ERROR_KINDS = (OUTSIDE, ZERO_AREA, DUPLICATE, VAL_ONLY, UNREADABLE)
WARNING_KINDS = (TINY,)
TINY_PIXELS = 2.0
DUPLICATE_PIXELS = 1.0

# what the readers' bad-sample logs call the problems this report names
_LOGGED = {
    'box clipped to image': (OUTSIDE, 'clipped by the reader'),
    'box outside the image dropped': (OUTSIDE, 'dropped by the reader'),
    'zero-area box dropped': (ZERO_AREA, 'dropped by the reader'),
    'box with xmin > xmax dropped': (ZERO_AREA, 'xmin > xmax, dropped by the reader'),
    'box with ymin > ymax dropped': (ZERO_AREA, 'ymin > ymax, dropped by the reader'),
    'box with negative width dropped': (ZERO_AREA, 'negative width, dropped by the reader'),
    'box with negative height dropped': (ZERO_AREA,
                                         'negative height, dropped by the reader'),
    'missing image': (UNREADABLE, 'missing'),
    'unreadable image': (UNREADABLE, 'unreadable'),
    'truncated image': (UNREADABLE, 'truncated'),
}

# ----- adapters: dataset -> records ------------------------------------------------------
_ADAPTERS = []


def register_records(kind):
    """Register ``function(dataset) -> iterable of Record`` for datasets of type `kind`
    (the adapter of the most derived matching type is used)."""
    def register(function):
        _ADAPTERS.append((kind, function))
        return function
    return register


def dataset_records(dataset):
    """The :class:`Record` s of `dataset` through its type's adapter; a list of records
    passes through.

    Raises
    ------
    TypeError
        No adapter knows the dataset's type.
    """
    for kind, function in sorted(_ADAPTERS, key=lambda a: -len(a[0].__mro__)):
        if isinstance(dataset, kind):
            return list(function(dataset))
    if isinstance(dataset, (list, tuple)) and all(isinstance(r, Record) for r in dataset):
        return list(dataset)
    raise TypeError('no dataset report adapter for {}; register one with '
                    'gluoncv_fp16.data.report.register_records'.format(type(dataset).__name__))


def _valid_rows(label):
    """(boxes (N, 4), classes (N,)) of the rows of class >= 0 (others are padding)."""
    label = np.asarray(label, np.float64)
    label = label.reshape(-1, label.shape[-1]) if label.size else np.zeros((0, 5))
    keep = label[:, 4] >= 0
    return label[keep, :4], label[keep, 4].astype(int)


@register_records(DetectionDataset)
def _file_dataset_records(dataset):
    """Readers that keep every label in memory (VOC layouts, COCO and their kin)."""
    sizes = dataset.image_sizes()
    for idx in range(len(dataset)):
        boxes, classes = _valid_rows(dataset.label(idx))
        size = sizes[idx] or (None, None)
        yield Record(dataset.sample_name(idx), size[0], size[1], boxes, classes)


@register_records(RecordDetection)
def _recordio_records(dataset):
    """RecordIO keeps labels in each record's header, some as fractions of the image
    size: every record is read (not decoded; the size comes from the image header)."""
    import mxnet as mx  # pylint: disable=import-outside-toplevel
    rec, idx_file = dataset.source_files()
    reader = mx.recordio.MXIndexedRecordIO(idx_file, rec, 'r')
    try:
        for idx, key in enumerate(reader.keys):
            header, payload = mx.recordio.unpack(reader.read_idx(key))
            name = dataset.sample_name(idx)
            size = _encoded_size(np.frombuffer(payload, np.uint8))
            if size is None:
                yield Record(name, None, None, np.zeros((0, 4)), np.zeros(0, int))
                continue
            try:
                label = parse_record_label(header.label, size[0], size[1])
            except ValueError:
                label = np.zeros((0, 5), np.float32)  # the reader records it when read
            label = label[(label[:, 4] >= 0) & (label[:, 4] < dataset.num_class)]
            boxes, classes = _valid_rows(label)
            yield Record(name, float(size[0]), float(size[1]), boxes, classes)
    finally:
        reader.close()


def _encoded_size(buf):
    """(width, height) of an encoded image, from its header when it is a JPEG."""
    import cv2  # pylint: disable=import-outside-toplevel
    try:
        import simplejpeg  # pylint: disable=import-outside-toplevel
        height, width = simplejpeg.decode_jpeg_header(buf)[:2]
        return width, height
    except (ImportError, ValueError):
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        return None if img is None else (img.shape[1], img.shape[0])


# ----- statistics -------------------------------------------------------------------------
class SplitStats:
    """The numbers of one split at the data shape.

    Attributes
    ----------
    images, backgrounds : int
    boxes_per_image : (images,) int
    class_images, class_boxes : (C,) int
        Images with at least one box of the class; boxes of the class.
    sizes : (B, 2) float
        Box width and height in pixels at the data shape (images of known size).
    centres : (B, 2) float
        Box centres as fractions of the image width and height.
    box_classes : (B,) int
    """

    def __init__(self, role, records, num_classes, data_shape):
        self.role = role
        self.images = len(records)
        stacked = _Stacked(records)
        self.boxes_per_image = stacked.counts
        self.backgrounds = int((self.boxes_per_image == 0).sum())
        ours = (stacked.classes >= 0) & (stacked.classes < num_classes)
        self.class_boxes = np.bincount(stacked.classes[ours], minlength=num_classes)
        pairs = np.unique(stacked.image[ours] * num_classes + stacked.classes[ours])
        self.class_images = np.bincount(pairs % num_classes, minlength=num_classes)
        known = stacked.known
        boxes, sizes = stacked.boxes[known], stacked.image_sizes[known]
        self.sizes = (boxes[:, 2:] - boxes[:, :2]) * data_shape / sizes
        self.centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / sizes
        self.box_classes = stacked.classes[known]

    @property
    def boxes(self):
        return int(self.boxes_per_image.sum())

    def summary(self):
        """One line: images, backgrounds, boxes."""
        share = 100.0 * self.backgrounds / self.images if self.images else 0.0
        per_image = self.boxes / self.images if self.images else 0.0
        return '{}: {} images ({} backgrounds, {:.1f}%), {} boxes ({:.2f} per image, max {})'\
            .format(self.role, self.images, self.backgrounds, share, self.boxes, per_image,
                    int(self.boxes_per_image.max()) if self.images else 0)

    def size_summary(self, data_shape):
        """One line: box width, height, aspect and COCO's small/medium/large counts at the
        data shape."""
        if not len(self.sizes):
            return '{} boxes at {} px: none of known size'.format(self.role, data_shape)
        width, height = self.sizes[:, 0], self.sizes[:, 1]
        with np.errstate(divide='ignore', invalid='ignore'):
            aspect = width / height
        area = width * height
        return ('{} boxes at {} px: width {}, height {}, aspect w/h {}; {} small (< 32x32), '
                '{} medium, {} large (> 96x96)'.format(
                    self.role, data_shape, _spread(width), _spread(height),
                    _spread(aspect[np.isfinite(aspect)], '{:.2f}'), int((area < 32 ** 2).sum()),
                    int(((area >= 32 ** 2) & (area <= 96 ** 2)).sum()),
                    int((area > 96 ** 2).sum())))


def _spread(values, form='{:.0f}'):
    if not len(values):
        return 'n/a'
    low, mid, high = np.percentile(values, [5, 50, 95])
    return ('median ' + form + ' (5-95%: ' + form + '-' + form + ')').format(mid, low, high)


# ----- problems ---------------------------------------------------------------------------
class _Stacked:
    """The boxes of many records in one array each, with the image each belongs to."""

    def __init__(self, records):
        self.counts = np.array([len(r.classes) for r in records], int)
        self.image = np.repeat(np.arange(len(records)), self.counts)
        self.boxes = np.concatenate([np.asarray(r.boxes, np.float64).reshape(-1, 4)
                                     for r in records] + [np.zeros((0, 4))])
        self.classes = np.concatenate([np.asarray(r.classes, int).reshape(-1)
                                       for r in records] + [np.zeros(0, int)])
        dims = np.array([(r.width or np.nan, r.height or np.nan) for r in records],
                        np.float64).reshape(-1, 2)
        self.image_sizes = dims[self.image]
        self.known = np.isfinite(self.image_sizes).all(axis=1) & (self.image_sizes > 0).all(
            axis=1)


def split_problems(records, role, data_shape):
    """The problems visible in the records' boxes (everything but unreadable images and
    classes only in validation), one :class:`Problem` per image and kind."""
    stacked = _Stacked(records)
    boxes, sizes, known = stacked.boxes, stacked.image_sizes, stacked.known
    with np.errstate(invalid='ignore', divide='ignore'):
        outside = known & ((boxes[:, :2] < -1e-3).any(axis=1) |
                           (boxes[:, 2:] > sizes + 1e-3).any(axis=1))
        extent = boxes[:, 2:] - boxes[:, :2]
        flat = (extent <= 0).any(axis=1)
        resized = extent * data_shape / sizes
        tiny = known & ~flat & (resized < TINY_PIXELS).any(axis=1)
    per_image = len(records)
    found = []

    def add(kind, mask, detail):
        hits = np.bincount(stacked.image[mask], minlength=per_image)
        for i in np.flatnonzero(hits):
            found.append(Problem(kind, role, records[i].path, detail(i, hits[i])))

    add(OUTSIDE, outside, lambda i, n: '{} of {} boxes, image {:g}x{:g}'.format(
        n, stacked.counts[i], records[i].width, records[i].height))
    add(ZERO_AREA, flat, lambda i, n: '{} of {} boxes'.format(n, stacked.counts[i]))
    pairs = _duplicate_pairs(stacked, per_image)
    for i in np.flatnonzero(pairs):
        found.append(Problem(DUPLICATE, role, records[i].path, '{} pair{}'.format(
            pairs[i], '' if pairs[i] == 1 else 's')))
    smallest = np.full(per_image, np.inf)
    np.minimum.at(smallest, stacked.image[tiny], resized[tiny].min(axis=1))
    add(TINY, tiny, lambda i, n: '{} of {} boxes, smallest side {:.2f} px at {} px'.format(
        n, stacked.counts[i], smallest[i], data_shape))
    return found


def _duplicate_pairs(stacked, num_images):
    """Per image, the pairs of boxes of one class whose corners are all within
    `DUPLICATE_PIXELS` of each other."""
    pairs = np.zeros(num_images, int)
    if not len(stacked.classes):
        return pairs
    key = stacked.image * (int(stacked.classes.max()) + 1) + stacked.classes
    order = np.argsort(key, kind='stable')
    starts = np.flatnonzero(np.r_[True, np.diff(key[order]) != 0])
    ends = np.r_[starts[1:], len(order)]
    for start, end in zip(starts, ends):
        if end - start < 2:
            continue
        group = stacked.boxes[order[start:end]]
        close = np.abs(group[:, None, :] - group[None, :, :]).max(axis=2) <= DUPLICATE_PIXELS
        pairs[stacked.image[order[start]]] += int(np.triu(close, k=1).sum())
    return pairs


def record_problems(record, role, data_shape):
    """:func:`split_problems` of one record."""
    return split_problems([record], role, data_shape)


def logged_problems(dataset, role):
    """The problems `dataset`'s reader recorded in its ``bad_samples`` log (repaired or
    skipped before the report saw the labels)."""
    log = getattr(dataset, 'bad_samples', None)
    if log is None:
        return []
    return [Problem(kind, role, path, detail) for reason, (kind, detail) in _LOGGED.items()
            for path in log.files(reason)]


# ----- the report -------------------------------------------------------------------------
class DatasetReport:
    """Statistics of the training and validation splits and the problems found.

    Build it with :func:`build_report`.
    """

    def __init__(self, classes, data_shape, splits, problems):
        self.classes = list(classes)
        self.data_shape = int(data_shape)
        self.splits = splits
        self.problems = problems

    @property
    def errors(self):
        """The problems ``--strict-data`` refuses."""
        return [p for p in self.problems if p.kind in ERROR_KINDS]

    def summary_lines(self):
        """What the start-up log and ``gluoncv-fp16-data`` print before the problems."""
        lines = ['dataset report at {} px: {}'.format(
            self.data_shape, '; '.join(s.summary() for s in self.splits.values()))]
        roles = list(self.splits)
        lines.append('per class, images/boxes in {}: {}'.format(' | '.join(roles), ', '.join(
            '{} {}'.format(name, ' | '.join('{}/{}'.format(
                self.splits[r].class_images[c], self.splits[r].class_boxes[c])
                for r in roles)) for c, name in enumerate(self.classes))))
        lines += [s.size_summary(self.data_shape) for s in self.splits.values()]
        return lines

    def problem_lines(self, max_files=5):
        """One line per (split, kind): how many files, the first few named with details."""
        groups = collections.OrderedDict()
        for problem in self.problems:
            groups.setdefault((problem.role, problem.kind), []).append(problem)
        lines = []
        for (role, kind), found in groups.items():
            files = sorted({p.path for p in found})
            named = '; '.join('{} ({})'.format(p.path, p.detail) if p.detail else p.path
                              for p in found[:max_files])
            more = ' and {} more'.format(len(files) - max_files) if len(files) > max_files \
                else ''
            lines.append('{} {}: {} file{}: {}{}'.format(
                role, kind if kind in WARNING_KINDS else kind + ' (error)', len(files),
                '' if len(files) == 1 else 's', named, more))
        return lines

    def error_line(self):
        """The one line ``--strict-data`` stops with (None without errors)."""
        errors = self.errors
        if not errors:
            return None
        first = errors[0]
        counts = collections.Counter(p.kind for p in errors)
        return ('--strict-data: {} data error{} in the labels ({}); first: {} in {} ({}). '
                'Fix them (gluoncv-fp16-data lists them all) or drop --strict-data'.format(
                    len(errors), '' if len(errors) == 1 else 's',
                    ', '.join('{} x {}'.format(n, k) for k, n in counts.items()), first.kind,
                    first.path, first.detail))

    def write_png(self, path):
        """The labels picture (YOLOv5's labels.jpg in spirit) of the training split."""
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
        train = next(iter(self.splits.values()))
        fig, axes = plt.subplots(2, 2, figsize=(9, 8))
        ax = axes[0, 0]
        positions = np.arange(len(self.classes))
        width = 0.8 / max(1, len(self.splits))
        for k, split in enumerate(self.splits.values()):
            ax.bar(positions + k * width, split.class_boxes, width, label=split.role)
        ax.set_xticks(positions + width * (len(self.splits) - 1) / 2)
        ax.set_xticklabels(self.classes, rotation=90 if len(self.classes) > 6 else 0,
                           fontsize=7)
        ax.set(ylabel='boxes', title='boxes per class')
        ax.legend(fontsize=8)
        ax = axes[0, 1]
        if len(train.centres):
            ax.hist2d(np.clip(train.centres[:, 0], 0, 1), np.clip(train.centres[:, 1], 0, 1),
                      bins=40, range=[[0, 1], [0, 1]], cmap='Blues')
        ax.set(xlim=(0, 1), ylim=(1, 0), xlabel='x', ylabel='y',
               title='{} box centres (fraction of the image)'.format(train.role))
        ax = axes[1, 0]
        if len(train.sizes):
            ax.scatter(train.sizes[:, 0], train.sizes[:, 1], s=4, alpha=0.3,
                       c=train.box_classes, cmap='tab10' if len(self.classes) <= 10
                       else 'tab20')
        limit = self.data_shape
        ax.set(xlim=(0, limit), ylim=(0, limit), xlabel='width (px)', ylabel='height (px)',
               title='{} box sizes at {} px'.format(train.role, self.data_shape))
        ax = axes[1, 1]
        counts = train.boxes_per_image
        ax.hist(counts, bins=np.arange(-0.5, (counts.max() if len(counts) else 0) + 1.5))
        ax.set(xlabel='boxes per image', ylabel='images',
               title='{} images: {} backgrounds of {}'.format(train.role, train.backgrounds,
                                                              train.images))
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return path


def build_report(train, val, classes, data_shape, check_images=False):
    """The report of a training and a validation set.

    Parameters
    ----------
    train, val : dataset or list of Record
        Datasets are read through their adapter (:func:`dataset_records`); `val` may
        be None.
    classes : sequence of str
    data_shape : int
        The training input side: box sizes are reported at it.
    check_images : bool
        Also check that every image file is readable (:func:`.scan.scan_images`: the
        file is read, not decoded). Training's start-up scan already does it for the
        sets it scans, so training passes False.
    """
    splits, problems = collections.OrderedDict(), []
    records = {}
    for role, dataset in (('training', train), ('validation', val)):
        if dataset is None:
            continue
        if check_images and hasattr(dataset, 'read_encoded'):
            from .scan import scan_images  # pylint: disable=import-outside-toplevel
            scan_images(dataset, role)
        records[role] = dataset_records(dataset)
        splits[role] = SplitStats(role, records[role], len(classes), data_shape)
        problems += logged_problems(dataset, role)
        problems += split_problems(records[role], role, data_shape)
    if 'validation' in splits:
        missing = (splits['validation'].class_boxes > 0) & (splits['training'].class_boxes == 0)
        for c in np.flatnonzero(missing):
            first = next(r.path for r in records['validation'] if (r.classes == c).any())
            problems.append(Problem(VAL_ONLY, 'validation', first, "class '{}': {} boxes in "
                                    'validation, none in training'.format(
                                        classes[c], splits['validation'].class_boxes[c])))
    order = {kind: i for i, kind in enumerate(ERROR_KINDS + WARNING_KINDS)}
    problems.sort(key=lambda p: (order[p.kind], p.role != 'training'))
    return DatasetReport(classes, data_shape, splits, problems)


def startup_report(train, val, classes, data_shape, png_path=None, strict=False, log=True):
    """Training's start-up report: with `strict`, errors raise one line before anything
    is written; else the summary and problems are logged and the PNG written (when
    `png_path` is given). Returns the :class:`DatasetReport`.

    Raises
    ------
    gluoncv_fp16.errors.ConfigError
        `strict` and the labels have errors.
    """
    report = build_report(train, val, classes, data_shape)
    if strict and report.errors:
        raise ConfigError(report.error_line())
    if log:
        for line in report.summary_lines():
            logger.info(line)
        for line in report.problem_lines():
            logger.warning(line)
    if png_path:
        os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
        logger.info('labels picture: %s', report.write_png(png_path))
    return report
