"""Robust image decoding and the bookkeeping of bad samples.

Real datasets contain unreadable and truncated files, grayscale, RGBA and 16-bit
images, malformed annotations and boxes outside the image. A crash on one of them
hours into training is the worst outcome, so readers repair what can be repaired
(clip), skip what cannot, and record both in a :class:`BadSampleLog` -- one warning per
file the first time it is seen (for the first few files of each reason), a count
always. ``strict=True`` turns the first problem into a :class:`BadSampleError` naming
the file instead. Grayscale, RGBA and 16-bit images are valid images in another format:
they are converted to RGB and noted, never counted as bad, never refused.

Baseline colour JPEGs (almost every image of VOC and COCO) are decoded by libjpeg-turbo
through ``simplejpeg``: ~2.5-3x faster than ``cv2.imdecode`` and pixel-identical to it
(both run libjpeg-turbo's default accurate DCT and fancy upsampling; tested). Everything
else -- PNG, BMP, grayscale or CMYK JPEGs, 16-bit, files simplejpeg refuses -- and
machines without simplejpeg take the OpenCV path, which converts and records as before.
"""
import logging
import os
from collections import defaultdict

import cv2
import numpy as np

from ..errors import BadSampleError

try:
    import simplejpeg
except ImportError:  # optional at run time: OpenCV decodes everything then
    simplejpeg = None

__all__ = ['BadSampleError', 'BadSampleLog', 'decode_image', 'read_image', 'check_encoded',
           'encoded_size',
           'CONVERSIONS']

logger = logging.getLogger(__name__)

# format conversions: a valid image, converted to RGB uint8 (noted, not a bad sample)
CONVERSIONS = ('grayscale converted', 'alpha channel dropped', '16-bit converted')
# reasons that mean "repaired, sample kept" (the other bad ones mean "skipped")
REPAIRED = ('box clipped to image',)


class BadSampleLog:
    """Which files had which problem; counts survive worker processes via records.

    Only the process that made the log warns: copies in data worker processes record
    quietly and send their new records back (:meth:`take_new`), and the owner warns
    when it merges a record it has not seen -- so each file is warned once per run,
    however many workers and epochs meet it.

    Parameters
    ----------
    strict : bool
        Raise :class:`BadSampleError` on the first problem instead of recording it
        (format conversions, see `CONVERSIONS`, are never refused).
    max_warnings : int
        Warnings logged per reason; later files of the same reason log at DEBUG.
    """

    def __init__(self, strict=False, max_warnings=5):
        self.strict = bool(strict)
        self.max_warnings = int(max_warnings)
        self._files = defaultdict(set)   # reason -> paths (bad samples)
        self._notes = defaultdict(set)   # conversion -> paths (valid images, converted)
        self._new = []
        self._owner = os.getpid()

    def report(self, path, reason, detail=''):
        """Record that `path` had problem `reason` (raises when strict)."""
        conversion = reason in CONVERSIONS
        if self.strict and not conversion:
            raise BadSampleError(
                '{}; fix or remove the file, or drop --strict-data (strict=False) to '
                'repair or skip such samples'.format(_describe(path, reason, detail)),
                path, reason)
        if not self._add(reason, path):
            return
        self._new.append((reason, path, detail))
        if os.getpid() == self._owner:
            self._warn(reason, path, detail)

    def _add(self, reason, path):
        """True if (reason, path) is new here."""
        seen = self._notes if reason in CONVERSIONS else self._files
        if path in seen[reason]:
            return False
        seen[reason].add(path)
        return True

    def _warn(self, reason, path, detail):
        if reason in CONVERSIONS:
            logger.debug('image converted to RGB: %s', _describe(path, reason, detail))
            return
        number = len(self._files[reason])
        action = 'repaired' if reason in REPAIRED else 'skipped'
        level = logging.WARNING if number <= self.max_warnings else logging.DEBUG
        logger.log(level, 'bad sample %s: %s', action, _describe(path, reason, detail))
        if number == self.max_warnings + 1:
            logger.warning("more files with '%s'; further ones are logged at DEBUG level "
                           "(all are counted)", reason)

    def take_new(self):
        """Records (reason, path, detail) new to this process since the last call
        (workers send them back with each batch)."""
        new, self._new = self._new, []
        return new

    def merge(self, records):
        """Add records found in another process; warn about those new to this one."""
        for reason, path, *detail in records:
            if self._add(reason, path) and os.getpid() == self._owner:
                self._warn(reason, path, detail[0] if detail else '')

    def counts(self):
        """{reason: number of distinct files} of the bad samples."""
        return {reason: len(paths) for reason, paths in sorted(self._files.items())}

    def files(self, reason):
        """The distinct files recorded with `reason`, sorted (the dataset report names
        them)."""
        return sorted(self._files.get(reason, ()))

    def conversions(self):
        """{conversion: number of distinct files} of valid images converted to RGB."""
        return {reason: len(paths) for reason, paths in sorted(self._notes.items())}

    @property
    def count(self):
        """Number of distinct (file, reason) problems seen so far (conversions aside)."""
        return sum(len(paths) for paths in self._files.values())

    def summary(self):
        """One line for the training log, e.g. ``'3 bad samples: 2 x unreadable ...'``."""
        text = 'no bad samples' if not self._files else '{} bad samples: {}'.format(
            self.count, ', '.join('{} x {}'.format(n, r) for r, n in self.counts().items()))
        if self._notes:
            text += ' ({} converted to RGB)'.format(', '.join(
                '{} x {}'.format(n, r.split()[0]) for r, n in self.conversions().items()))
        return text


def _describe(path, reason, detail):
    return '{}: {}{}'.format(path, reason, ' ({})'.format(detail) if detail else '')


def _is_truncated(buf):
    """JPEG without its end marker or PNG without IEND: the file was cut short."""
    tail = bytes(buf[-64:]).rstrip(b'\x00\r\n ')
    if buf[:2].tobytes() == b'\xff\xd8':
        return not tail.endswith(b'\xff\xd9')
    if buf[:8].tobytes() == b'\x89PNG\r\n\x1a\n':
        return b'IEND' not in tail
    return False


_JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn (not DHT, JPG, DAC)
_JPEG_NO_LENGTH = set(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: markers without a length


def _jpeg_frame_size(buf):
    """(width, height) from the JPEG frame header, or None: walks the marker segments
    up to the first SOFn without decoding anything."""
    data, i = memoryview(np.ascontiguousarray(buf)).cast('B'), 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / scan before any frame header
            return None
        if marker in _JPEG_FRAMES:
            if i + 9 > len(data):
                return None
            height = int.from_bytes(data[i + 5:i + 7], 'big')
            return int.from_bytes(data[i + 7:i + 9], 'big'), height
        i += 2 + int.from_bytes(data[i + 2:i + 4], 'big')
    return None


_HEAD_BYTES = 1 << 16  # a JPEG's frame header follows its EXIF block, rarely beyond this


def encoded_size(path):
    """(width, height) of the image file `path` from its header, or None if it cannot
    be read. JPEG and PNG headers are read without decoding (the first 64 KiB, the whole
    file when a JPEG's frame header lies further); other formats are decoded.

    Raises
    ------
    FileNotFoundError
        No such file.
    """
    with open(path, 'rb') as f:
        head = f.read(_HEAD_BYTES)
        if head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR':
            return (int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big'))
        if head[:2] == b'\xff\xd8':
            size = _jpeg_frame_size(np.frombuffer(head, np.uint8))
            if size is None and len(head) == _HEAD_BYTES:
                size = _jpeg_frame_size(np.frombuffer(head + f.read(), np.uint8))
            return size
        head += f.read()
    img = cv2.imdecode(np.frombuffer(head, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if img is None or not img.size else (img.shape[1], img.shape[0])


def check_encoded(buf):
    """Cheap check of an encoded image: ``None`` if it looks usable, else ``(reason,
    detail)`` with the reasons :func:`decode_image` records.

    JPEG and PNG files are checked without decoding pixels: a JPEG must end with its EOI
    marker and have a frame header with a non-zero size, a PNG must end with IEND and
    start with an IHDR of non-zero size. Other formats (BMP, TIFF ...) are decoded.
    Damage inside the compressed data of a complete file is not found (decoding finds it).
    """
    buf = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    if buf.size == 0:
        return 'unreadable image', 'empty file'
    if _is_truncated(buf):
        return 'truncated image', ''
    head = buf[:32].tobytes()
    if head[:2] == b'\xff\xd8':
        size = _jpeg_frame_size(buf)
        ok = size is not None and min(size) > 0
        return None if ok else ('unreadable image', 'no JPEG frame header')
    if head[:8] == b'\x89PNG\r\n\x1a\n':
        ok = head[12:16] == b'IHDR' and min(int.from_bytes(head[16:20], 'big'),
                                            int.from_bytes(head[20:24], 'big')) > 0
        return None if ok else ('unreadable image', 'no PNG image header')
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return None if img is not None and img.size else ('unreadable image',
                                                      'not a decodable image')


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
    except FileNotFoundError:
        log.report(path, 'missing image')
        return None
    except OSError as err:
        log.report(path, 'unreadable image', err.strerror or str(err))
        return None
    return decode_image(buf, path, log)
