"""Decoded source images kept across epochs (``--cache ram|disk``), shared by all workers.

Decoding is the largest fixed part of a worker's cost per image; it gives the same
pixels every epoch, while augmentation must not repeat. So the cache holds the decoded
source image of each sample (after the repairs of :mod:`.imageio`), never an augmented
one, and the epochs after the first skip decoding.

One file holds a table and the pixels::

    table  (N + 1, 4) int64   row 0: magic, next free byte, decodes, N
                              row 1 + i: offset, height, width, state of sample i
    pixels uint8              images packed one after another (H, W, 3) RGB

``ram``: the file is made in /dev/shm (else the temp folder), mapped, and its name
removed at once: forked loader workers inherit the mapping, and the memory is returned
when the last process exits, however it exits. ``disk``: the file sits next to the
dataset, named by a fingerprint of the image files (paths, sizes, modification times),
and is reused by later runs and by every rank of a distributed run on the machine.

Space is handed out under a POSIX record lock (``lockf``; per process, so it excludes
the workers and the ranks from each other). A sample's state goes 0 (empty) -> 2
(being written) -> 1 (ready), or 3 (unusable: skipped without reading it again); a
reader only uses state 1. A sample two processes decode at once is stored once; the
other copy is simply not cached. When the space runs out (images larger than their
annotations said), the rest are decoded every epoch, as without a cache.
"""
import fcntl
import hashlib
import logging
import mmap
import os
import tempfile

import numpy as np

from ..errors import CacheError

__all__ = ['ImageCache', 'CacheError', 'estimate_bytes', 'enable_cache']

logger = logging.getLogger(__name__)

_MAGIC = 0x6763766670313663  # 'gcvfp16c'
_EMPTY, _READY, _WRITING, _BAD = 0, 1, 2, 3
MODES = ('ram', 'disk')
_RAM_HEADROOM = 0.8  # refuse RAM caching above this share of the available memory


class ImageCache:
    """Fixed-capacity store of decoded images, indexed by sample.

    Parameters
    ----------
    num_samples : int
    capacity : int
        Bytes for pixels.
    path : str, optional
        Disk file (reused when it exists with the same layout); None keeps it in memory.
    """

    def __init__(self, num_samples, capacity, path=None):
        self.num_samples, self.path = int(num_samples), path
        table_bytes = (self.num_samples + 1) * 4 * 8
        size = table_bytes + int(capacity)
        if path is None:
            folder = '/dev/shm' if os.path.isdir('/dev/shm') else None
            fd, name = tempfile.mkstemp(prefix='gluoncv_fp16_cache_', dir=folder)
            os.unlink(name)  # the mapping and the descriptor keep it; nothing left behind
        else:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._fd = fd
        with self._locked():
            fresh = os.fstat(fd).st_size != size
            if fresh:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)  # sparse: pages are used as images arrive
            self._map = mmap.mmap(fd, size)
            self._table = np.frombuffer(self._map, np.int64, (self.num_samples + 1) * 4
                                        ).reshape(-1, 4)
            self._pixels = np.frombuffer(self._map, np.uint8, offset=table_bytes)
            if fresh or self._table[0, 0] != _MAGIC or self._table[0, 3] != num_samples:
                self._table[:] = 0
                self._table[0] = (_MAGIC, 0, 0, num_samples)
            else:  # a previous run stopped mid-write: those samples are decoded again
                self._table[1:, 3][self._table[1:, 3] == _WRITING] = _EMPTY
        self._full_logged = False

    def _locked(self):
        return _Lock(self._fd)

    @property
    def decodes(self):
        """Images decoded and stored so far, in all processes (the cache's misses)."""
        return int(self._table[0, 2])

    @property
    def cached(self):
        return int((self._table[1:, 3] == _READY).sum())

    def is_bad(self, idx):
        return self._table[idx + 1, 3] == _BAD

    def get(self, idx):
        """The (H, W, 3) uint8 image of sample `idx` (read-only view), or None."""
        offset, height, width, state = self._table[idx + 1]
        if state != _READY:
            return None
        img = self._pixels[offset:offset + height * width * 3].reshape(height, width, 3)
        img.flags.writeable = False
        return img

    def put(self, idx, img):
        """Store a freshly decoded image (returns whether it was stored)."""
        img = np.ascontiguousarray(img, np.uint8)
        nbytes = img.size
        with self._locked():
            self._table[0, 2] += 1
            if self._table[idx + 1, 3] != _EMPTY:
                return False  # another process stored (or is storing) it
            offset = int(self._table[0, 1])
            if img.ndim != 3 or offset + nbytes > self._pixels.size:
                self._log_full()
                return False
            self._table[0, 1] = offset + nbytes
            self._table[idx + 1] = (offset, img.shape[0], img.shape[1], _WRITING)
        self._pixels[offset:offset + nbytes] = img.reshape(-1)
        with self._locked():  # a barrier: the pixels are visible before the state says so
            self._table[idx + 1, 3] = _READY
        return True

    def mark_bad(self, idx):
        """Remember that sample `idx` cannot be used, so it is not read again."""
        with self._locked():
            if self._table[idx + 1, 3] == _EMPTY:
                self._table[idx + 1, 3] = _BAD

    def _log_full(self):
        if not self._full_logged:
            logger.warning('image cache full (%.1f MB): further images are decoded every '
                           'epoch', self._pixels.size / 2 ** 20)
            self._full_logged = True

    def __getstate__(self):
        raise TypeError('an ImageCache is shared with loader workers by fork only; it '
                        'cannot be pickled')


class _Lock:
    """An exclusive ``lockf`` on the whole cache file while in the ``with`` block."""

    def __init__(self, fd):
        self._fd = fd

    def __enter__(self):
        fcntl.lockf(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.lockf(self._fd, fcntl.LOCK_UN)


def estimate_bytes(dataset):
    """Bytes of all decoded images: width x height x 3 from the annotations.

    Where sizes are not annotated (RecordIO), a few images are decoded and the largest
    size is assumed for every sample.
    """
    sizes = list(dataset.image_sizes())
    if sizes and all(s is not None for s in sizes):
        return int(sum(int(w) * int(h) * 3 for w, h in sizes))
    probe = [dataset.decoded_size(i) for i in range(min(16, len(dataset)))]
    largest = max([w * h * 3 for w, h in (s for s in probe if s)] or [0])
    return int(largest * len(dataset))


def _available_memory():
    """Bytes of memory a new RAM cache can use: MemAvailable and /dev/shm's free space."""
    limits = []
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    folder = '/dev/shm' if os.path.isdir('/dev/shm') else tempfile.gettempdir()
    stat = os.statvfs(folder)
    limits.append(stat.f_bavail * stat.f_frsize)
    return min(limits)


def _fingerprint(dataset):
    digest = hashlib.sha1(type(dataset).__name__.encode())
    for path in dataset.source_files():
        stat = os.stat(path) if os.path.exists(path) else None
        digest.update('{}|{}|{}\n'.format(path, stat and stat.st_size,
                                          stat and stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def _disk_path(dataset, split):
    folder = os.path.join(dataset.cache_folder(), '.gluoncv_fp16_cache')
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass  # a write probe
    except OSError:
        folder = os.path.join(os.path.expanduser('~'), '.cache', 'gluoncv_fp16', 'images')
        logger.info('dataset folder not writable; the disk cache goes to %s', folder)
        os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, '{}_{}.bin'.format(split, _fingerprint(dataset)))


def enable_cache(datasets, mode):
    """Give each dataset an :class:`ImageCache` (``mode`` 'ram' or 'disk').

    The size estimate is logged first; RAM caching is refused when the decoded images
    would not fit in the available memory, disk caching when the folder lacks space.

    Parameters
    ----------
    datasets : dict
        {split name: DetectionDataset}, e.g. {'train': train, 'val': val}.
    mode : {'ram', 'disk'}

    Raises
    ------
    CacheError
        One line saying what does not fit and what to do instead.
    """
    if mode not in MODES:
        raise CacheError("cache must be one of {}, got '{}'".format(MODES, mode))
    needs = {split: estimate_bytes(d) for split, d in datasets.items()}
    total = sum(needs.values())
    count = sum(len(d) for d in datasets.values())
    logger.info('--cache %s: %d images, about %.2f GB decoded (%s)', mode, count, total / 1e9,
                ', '.join('{} {:.2f} GB'.format(s, n / 1e9) for s, n in needs.items()))
    if mode == 'ram':
        available = _available_memory()
        if total > _RAM_HEADROOM * available:
            raise CacheError(
                '--cache ram needs about {:.2f} GB for {} decoded images but only {:.2f} GB '
                'of memory is available; use --cache disk, or no --cache'.format(
                    total / 1e9, count, available / 1e9))
    for split, dataset in datasets.items():
        capacity = int(needs[split] * 1.02) + 2 ** 20  # annotation sizes may be a bit off
        path = _disk_path(dataset, split) if mode == 'disk' else None
        if path is not None:
            free = os.statvfs(os.path.dirname(path))
            have = os.path.getsize(path) if os.path.exists(path) else 0
            if capacity > free.f_bavail * free.f_frsize + have:
                raise CacheError('--cache disk needs about {:.2f} GB in {} but only {:.2f} GB '
                                 'is free; use --cache ram, or no --cache'.format(
                                     capacity / 1e9, os.path.dirname(path),
                                     free.f_bavail * free.f_frsize / 1e9))
            logger.info('--cache disk: %s', path)
        dataset.image_cache = ImageCache(len(dataset), capacity, path)
    return [d.image_cache for d in datasets.values()]
