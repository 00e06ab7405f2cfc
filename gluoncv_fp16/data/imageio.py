"""Robust image decoding and the bookkeeping of bad samples.

Real datasets contain unreadable and truncated files, grayscale, RGBA and 16-bit
images, malformed annotations and boxes outside the image. A crash on one of them
hours into training is the worst outcome, so readers repair what can be repaired
(convert, clip), skip what cannot, and record both in a :class:`BadSampleLog` -- one
warning per reason for the first few files, a count always. ``strict=True`` turns the
first problem into a :class:`BadSampleError` naming the file instead.

Baseline colour JPEGs (almost every image of VOC and COCO) are decoded by libjpeg-turbo
through ``simplejpeg``: ~2.5-3x faster than ``cv2.imdecode`` and pixel-identical to it
(both run libjpeg-turbo's default accurate DCT and fancy upsampling; tested). Everything
else -- PNG, BMP, grayscale or CMYK JPEGs, 16-bit, files simplejpeg refuses -- and
machines without simplejpeg take the OpenCV path, which repairs and records as before.
"""
import logging
from collections import defaultdict

import cv2
import numpy as np

try:
    import simplejpeg
except ImportError:  # optional at run time: OpenCV decodes everything then
    simplejpeg = None

__all__ = ['BadSampleError', 'BadSampleLog', 'decode_image', 'read_image']

logger = logging.getLogger(__name__)

# reasons that mean "repaired, sample kept" (the others mean "skipped")
REPAIRED = ('grayscale converted', 'alpha channel dropped', '16-bit converted',
            'box clipped to image')


class BadSampleError(ValueError):
    """A sample is unusable and the dataset was opened with ``strict=True``."""


class BadSampleLog:
    """Which files had which problem; counts survive worker processes via records.

    Parameters
    ----------
    strict : bool
        Raise :class:`BadSampleError` on the first problem instead of recording it.
    max_warnings : int
        Warnings logged per reason; later files of the same reason log at DEBUG.
    """

    def __init__(self, strict=False, max_warnings=5):
        self.strict = bool(strict)
        self.max_warnings = int(max_warnings)
        self._files = defaultdict(set)
        self._new = []

    def report(self, path, reason, detail=''):
        """Record that `path` had problem `reason` (raises when strict)."""
        message = '{}: {}{}'.format(path, reason, ' ({})'.format(detail) if detail else '')
        if self.strict:
            raise BadSampleError(message + '; fix or remove the file, or open the dataset '
                                 'with strict=False to repair/skip such samples')
        if path in self._files[reason]:
            return
        self._files[reason].add(path)
        self._new.append((reason, path))
        action = 'repaired' if reason in REPAIRED else 'skipped'
        level = logging.WARNING if len(self._files[reason]) <= self.max_warnings \
            else logging.DEBUG
        logger.log(level, 'bad sample %s: %s', action, message)
        if len(self._files[reason]) == self.max_warnings + 1:
            logger.warning("more files with '%s'; further ones are logged at DEBUG level",
                           reason)

    def take_new(self):
        """Records (reason, path) added since the last call (sent back by workers)."""
        new, self._new = self._new, []
        return new

    def merge(self, records):
        """Add records found in another process (without re-logging them)."""
        for reason, path in records:
            self._files[reason].add(path)

    def counts(self):
        """{reason: number of distinct files}."""
        return {reason: len(paths) for reason, paths in sorted(self._files.items())}

    @property
    def count(self):
        """Number of distinct (file, reason) problems seen so far."""
        return sum(len(paths) for paths in self._files.values())

    def summary(self):
        """One line for the training log, e.g. ``'3 bad samples: 2 x unreadable ...'``."""
        if not self._files:
            return 'no bad samples'
        parts = ['{} x {}'.format(n, reason) for reason, n in self.counts().items()]
        return '{} bad samples: {}'.format(self.count, ', '.join(parts))


def _is_truncated(buf):
    """JPEG without its end marker or PNG without IEND: the file was cut short."""
    tail = bytes(buf[-64:]).rstrip(b'\x00\r\n ')
    if buf[:2].tobytes() == b'\xff\xd8':
        return not tail.endswith(b'\xff\xd9')
    if buf[:8].tobytes() == b'\x89PNG\r\n\x1a\n':
        return b'IEND' not in tail
    return False


def decode_image(buf, name, log):
    """Encoded bytes -> (H, W, 3) uint8 RGB, or None if unusable (recorded in `log`)."""
    buf = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    if buf.size == 0:
        log.report(name, 'unreadable image', 'empty file')
        return None
    if _is_truncated(buf):
        log.report(name, 'truncated image')
        return None
    img = _decode_colour_jpeg(buf)
    if img is not None:
        return img
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        log.report(name, 'unreadable image', 'not a decodable image')
        return None
    return _to_rgb8(img, name, log)


def _decode_colour_jpeg(buf):
    """(H, W, 3) uint8 RGB of a colour JPEG via libjpeg-turbo, or None for anything else.

    Only YCbCr/RGB JPEGs take this path: the others need the repairs and records of the
    OpenCV path (grayscale, CMYK) or are not JPEGs at all.
    """
    if simplejpeg is None or buf[:2].tobytes() != b'\xff\xd8':
        return None
    try:
        if simplejpeg.decode_jpeg_header(buf)[2] not in ('YCbCr', 'RGB'):
            return None
        return simplejpeg.decode_jpeg(buf, colorspace='RGB')
    except ValueError:  # e.g. 12-bit or arithmetic-coded: let OpenCV try
        return None


def _to_rgb8(img, name, log):
    if img.dtype == np.uint16:
        log.report(name, '16-bit converted')
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        log.report(name, '16-bit converted', 'from {}'.format(img.dtype))
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2 or img.shape[2] == 1:
        log.report(name, 'grayscale converted')
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        log.report(name, 'alpha channel dropped')
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path, log):
    """Read a file -> (H, W, 3) uint8 RGB, or None if unusable (recorded in `log`)."""
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        log.report(path, 'unreadable image', err.strerror or str(err))
        return None
    return decode_image(buf, path, log)
