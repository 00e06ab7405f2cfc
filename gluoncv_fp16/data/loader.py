"""Training and validation loaders: multi-scale, reproducible, worker processes.

Why not GluonCV's ``RandomTransformDataLoader``: it draws augmentation from global RNG
state (so a resumed run, or another worker count, sees other batches), and it sends
the transform -- which holds the network -- to workers with every batch. Here the
dataset and one fast transform per input size are handed to the worker processes once,
when the pool starts (inherited by fork); each task is a few integers (sample indices,
epochs, input size, mixup on/off, a ring slot), so nothing big is pickled per batch.
Workers batchify straight into a slot of a :class:`.batch_ring.BatchRing` (shared
memory made and touched once, reused; a file in /dev/shm when no slot is free), and
the parent wraps views of it as NDArrays on ``mx.cpu(0)`` without a copy (never
``cpu_shared``, which a hybridized net on ``cpu(0)`` rejects).

Training batches are packed (:mod:`.device_batch`): ``(image uint8 (B, 3, S, S),
gt_boxes (B, M, 4), targets (B, 1 + K, 8))``, a sixth of the dense batch's bytes; the
trainer's ``device_batch.to_devices`` splits them over its devices and rebuilds there
the normalised float32 image and the dense targets ``(obj_t, centers_t, scales_t,
weights_t, clas_t)``, (B, R, 1 | 2 | 2 | 2 | C). gt_boxes are padded with -1 like
GluonCV's ``Pad``. Validation batches are ``(image float32, label)`` with label
(B, N, 5+) padded with -1.
"""
import collections
import logging
import multiprocessing
import os
import shutil
import weakref

import cv2
import numpy as np

from .batch_ring import BatchRing, batch_layout
from .batchify import (assemble, batch_specs, fill_batch, from_file, pad_stack, spool_dir,
                       to_file, train_fields)
from .device_batch import ASSIGNED_ROWS, from_host
from .sampling import EpochPlan, sample_rng
from .targets import ASSIGNED_COLUMNS
from .transforms import YOLO3FastTrainTransform, YOLO3FastValTransform
from .worker_pool import WorkerDied, WorkerPool

__all__ = ['make_train_loader', 'make_val_loader', 'TrainLoader', 'ValLoader',
           'pad_stack', 'mixup_sample']  # pad_stack: re-exported from .batchify

logger = logging.getLogger(__name__)

MIXUP_BETA = (1.5, 1.5)  # GluonCV train_yolo3.py: np.random.beta(1.5, 1.5)
_WORKER_STATE = {}  # in worker processes: dataset and transforms, set once at start
_SPARE_SLOTS = 3  # ring slots beyond those in flight: the batch in use and the ones just left
_GT_ROWS = ASSIGNED_ROWS  # padded box rows a ring slot has room for (larger: a file)


def mixup_sample(dataset, index, rng, enabled):
    """``(img, label + weight column)`` with GluonCV's ``MixupDetection`` semantics.

    With probability given by Beta(1.5, 1.5) the sample is blended with another random
    sample; the weight column holds each box's blend ratio (1 without mixing).
    """
    img, label = dataset[index]
    lam = float(np.clip(rng.beta(*MIXUP_BETA), 0, 1)) if enabled else 1.0
    if lam >= 1 or len(dataset) < 2:
        return img, np.hstack([label, np.ones((len(label), 1), np.float32)])
    other = int(rng.integers(len(dataset) - 1))
    other += other >= index
    img2, label2 = dataset[other]
    height, width = max(img.shape[0], img2.shape[0]), max(img.shape[1], img2.shape[1])
    mix = np.zeros((height, width, 3), np.float32)
    mix[:img.shape[0], :img.shape[1]] = img.astype(np.float32) * lam
    mix[:img2.shape[0], :img2.shape[1]] += img2.astype(np.float32) * (1.0 - lam)
    labels = np.vstack([np.hstack([label, np.full((len(label), 1), lam)]),
                        np.hstack([label2[:, :label.shape[1]],
                                   np.full((len(label2), 1), 1.0 - lam)])])
    return mix.astype(np.uint8), labels.astype(np.float32)


def _init_worker(dataset, transforms, spool, ring):
    cv2.setNumThreads(1)  # one OpenCV thread per worker process; the pool is the parallelism
    _WORKER_STATE.update(dataset=dataset, transforms=transforms, spool=spool, ring=ring)


def _in_worker(task, args, slot):
    """Run `task`; write its batch into ring `slot` (or a file when none/too small)."""
    fields, records = task(_WORKER_STATE, *args)
    layout, size = batch_layout(batch_specs(fields))
    ring = _WORKER_STATE['ring']
    if slot is not None and size <= ring.capacity:
        fill_batch(fields, ring.views(slot, layout))
        return ('slot', slot, layout), records
    return ('file',) + to_file(assemble(fields), _WORKER_STATE['spool']), records


def _train_task(state, items, shape, mixup, seed):
    """One packed training batch (see .device_batch) as batchify fields, plus bad-sample
    records found meanwhile."""
    dataset, transform = state['dataset'], state['transforms'][shape]
    outs = []
    for index, epoch in items:
        rng = sample_rng(seed, epoch, index)
        img, label = mixup_sample(dataset, index, rng, mixup)
        outs.append(transform.apply_packed(img, label, rng=rng))
    return train_fields(outs), dataset.bad_samples.take_new()


def _val_task(state, items, shape, mixup, seed):  # pylint: disable=unused-argument
    dataset, transform = state['dataset'], state['transforms'][shape]
    outs = [transform.apply(*dataset[index]) for index, _ in items]
    fields = [('stack', np.float32, [o[0] for o in outs]),
              ('pad', np.float32, [o[1] for o in outs])]
    return fields, dataset.bad_samples.take_new()


class _Loader:
    """Shared machinery: persistent worker processes, bounded prefetch, ordered results.

    Subclasses give ``_max_batch_specs()``: the (shape, dtype) of their largest batch,
    which sizes the ring slots. The ring holds ``2 x num_workers + 3`` such batches
    for the loader's lifetime.
    """

    use_ring = True

    def __init__(self, dataset, transforms, task, num_workers):
        if num_workers < 0:
            raise ValueError('num_workers must be >= 0, got {}'.format(num_workers))
        self.dataset, self._transforms, self._task = dataset, transforms, task
        self.num_workers = int(num_workers)
        self._pool, self._spool, self._ring = None, None, None
        self._remove_spool = None  # finaliser removing the spool folder, set with it
        self._generation = 0  # a new worker pool each time the loader is (re)started
        self.transport = collections.Counter()  # batches received per path: 'slot', 'file'

    @property
    def bad_sample_count(self):
        """Distinct bad samples seen so far, including those found by workers."""
        return self.dataset.bad_samples.count

    def _max_batch_specs(self):
        raise NotImplementedError

    def _start(self):
        if self._pool is None and self.num_workers > 0:
            methods = multiprocessing.get_all_start_methods()
            method = 'fork' if 'fork' in methods else 'spawn'
            if self._ring is None and method == 'fork' and self.use_ring:
                self._ring = self._make_ring()
            # A child forked while OpenCV's thread pool exists deadlocks in its first
            # parallel cv2 call: fork with the pool shut down, then restore it here.
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                self._spool = spool_dir()
                self._remove_spool = weakref.finalize(self, shutil.rmtree, self._spool, True)
                self._pool = WorkerPool(
                    multiprocessing.get_context(method), self.num_workers, _init_worker,
                    (self.dataset, self._transforms, self._spool, self._ring))
            finally:
                cv2.setNumThreads(threads)

    def _make_ring(self):
        """Ring slots (inherited by the forked workers, never named), or None when the
        memory cannot be had: then every batch takes the file path."""
        try:
            return BatchRing(2 * self.num_workers + _SPARE_SLOTS,
                             batch_layout(self._max_batch_specs())[1])
        except (OSError, MemoryError, ValueError) as err:
            logger.warning('no shared batch ring (%s); batches go through /dev/shm files',
                           err)
            return None

    def _run(self, tasks):
        """Yield batches (NDArrays) for `tasks` ((items, shape, mixup, seed) tuples)."""
        self._start()
        if self._pool is None:
            state = {'dataset': self.dataset, 'transforms': self._transforms}
            for args in tasks:
                fields, records = self._task(state, *args)
                yield self._finish(assemble(fields), records)
            return
        tasks, pending, generation = iter(tasks), collections.deque(), self._generation
        try:
            while True:  # keep 2 batches per worker in flight, results in order
                while len(pending) < 2 * self.num_workers:
                    args = next(tasks, None)
                    if args is None:
                        break
                    slot = self._ring.acquire() if self._ring is not None else None
                    pending.append((self._pool.submit(_in_worker, self._task, args, slot),
                                    slot))
                if not pending:
                    return
                worker, slot = pending.popleft()
                try:
                    written, records = self._pool.receive(worker)
                except WorkerDied:
                    self.close()
                    raise
                except BaseException:
                    self._release(slot, None)
                    raise
                yield self._finish(self._receive(written, slot), records)
        finally:  # an epoch left early, or a failure: read and free what is still coming
            if generation == self._generation:
                self._drain(pending)

    def _drain(self, pending):
        """Receive the results of `pending` tasks (keeping each worker's pipe in step)
        and free their slots and files."""
        while pending:
            worker, slot = pending.popleft()
            try:
                written = self._pool.receive(worker)[0]
            except WorkerDied:
                self.close()
                return
            except Exception:  # pylint: disable=broad-except
                written = None  # the task failed: only its slot is left to free
            self._release(slot, written)

    def _receive(self, written, slot):
        self.transport[written[0]] += 1
        if written[0] == 'slot':
            return self._ring.wrap(written[1], written[2])
        self._release(slot, None)
        return from_file(written[1], written[2])

    def _release(self, slot, written):
        """Free a slot or file whose batch will never be wrapped."""
        if slot is not None and self._ring is not None:
            self._ring.release(slot)
        if written is not None and written[0] == 'file' and os.path.exists(written[1]):
            os.remove(written[1])

    def _finish(self, batch, records):
        self.dataset.bad_samples.merge(records)
        return from_host(batch)

    def close(self):
        """Stop the worker processes (a new iteration starts them again)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
            self._generation += 1
        if self._ring is not None:  # no worker is left to write into these
            self._ring.release_in_flight()
        if self._spool is not None:  # batches written but never read
            self._remove_spool()  # (also runs at interpreter exit if close never does)
            self._spool = None

    def __del__(self):
        # Not contextlib.suppress (SIM105): at interpreter shutdown this module's globals,
        # `contextlib` among them, may already be gone; a bare try/except needs no name.
        try:  # noqa: SIM105
            self.close()
        except Exception:  # pylint: disable=broad-except
            pass  # interpreter shutdown


class TrainLoader(_Loader):
    """Training batches of one epoch at a time; see :func:`make_train_loader`."""

    def __init__(self, dataset, transforms, plan, data_shape, num_workers, random_shape,
                 shape_interval, shapes, mixup):
        super().__init__(dataset, transforms, _train_task, num_workers)
        self.plan, self.data_shape = plan, int(data_shape)
        self.random_shape, self.shape_interval = bool(random_shape), int(shape_interval)
        self.shapes, self.epoch = tuple(shapes), 0
        self._first_batch = 0
        self._mixup_available = bool(mixup)
        self.mixup = bool(mixup)

    def _max_batch_specs(self):
        size = max(self._transforms)
        transform = self._transforms[size]
        batch = self.plan.batch_size
        return [((batch, 3, transform.height, transform.width), np.uint8),
                ((batch, _GT_ROWS, 4), np.float32),
                ((batch, 1 + ASSIGNED_ROWS, ASSIGNED_COLUMNS), np.float32)]

    def set_epoch(self, epoch):
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)
        self._first_batch = 0

    def set_start(self, batch):
        """Begin the next iteration at this batch of the epoch (a mid-epoch resume): the
        epoch's plan depends only on (seed, epoch, index), so the earlier batches are
        skipped without being loaded."""
        self._first_batch = int(batch)

    def set_mixup(self, enabled):
        """Turn mixup on/off (e.g. off for the last epochs, as GluonCV's --no-mixup-epochs)."""
        if enabled and not self._mixup_available:
            raise ValueError('mixup was not enabled when the loader was made; pass mixup=True '
                             'to make_train_loader')
        self.mixup = bool(enabled)

    def __len__(self):
        return self.plan.num_batches(self.epoch)

    def batch_shapes(self, epoch):
        count = self.plan.num_batches(epoch)
        if not self.random_shape:
            return [self.data_shape] * count
        return self.plan.shapes(epoch, count, self.shapes, self.shape_interval)

    def __iter__(self):
        batches = self.plan.batches(self.epoch)
        shapes = self.batch_shapes(self.epoch)
        start, self._first_batch = self._first_batch, 0
        return self._run([(items, shape, self.mixup, self.plan.seed)
                          for items, shape in zip(batches, shapes)][start:])


class ValLoader(_Loader):
    """Validation batches in dataset order, the last one possibly smaller.

    Validation runs once per epoch, so its batches take /dev/shm files rather than
    holding a ring of shared memory for the whole run.
    """

    use_ring = False

    def __init__(self, dataset, batch_size, data_shape, num_workers, mean, std):
        transforms = {int(data_shape): YOLO3FastValTransform(data_shape, data_shape, mean, std)}
        super().__init__(dataset, transforms, _val_task, num_workers)
        self.plan = EpochPlan(len(dataset), batch_size, shuffle=False, last_batch='keep')
        self.data_shape = int(data_shape)

    def __len__(self):
        return self.plan.num_batches(0)

    def __iter__(self):
        return self._run([(items, self.data_shape, False, 0) for items in self.plan.batches(0)])


def make_train_loader(dataset, net, batch_size, data_shape, *, num_workers=0,
                      random_shape=False, shape_interval=10, shapes=range(320, 609, 32),
                      mixup=False, augment=True, max_expand=4.0, shuffle=True, seed=0,
                      num_parts=1,
                      part_index=0, last_batch='rollover', mean=(0.485, 0.456, 0.406),
                      std=(0.229, 0.224, 0.225)):
    """Reproducible multi-scale YOLOv3 training loader (see the module docstring).

    Parameters
    ----------
    dataset : DetectionDataset
        Samples ``(img, label)`` (e.g. from :func:`.datasets.build_datasets`).
    net : YOLOV3
        FP32 or FP16-cast; only anchors and feature-map shapes are read, once per size.
    batch_size, data_shape : int
    num_workers : int
        Worker processes (0: in this process). Batches are identical for any value.
    random_shape, shape_interval, shapes
        Every `shape_interval` batches pick a random square size from `shapes`.
    mixup : bool
        GluonCV's MixupDetection (Beta(1.5, 1.5)); switch with ``loader.set_mixup``.
    augment : bool
        False: no random augmentation (plain resize + normalise).
    max_expand : float
        Largest zoom-out of the random expand (GluonCV: 4; 1: none).
    shuffle, seed, num_parts, part_index, last_batch
        See :class:`.sampling.EpochPlan`. Epoch `e`'s order depends only on
        ``(seed, e)``, each sample's augmentation only on ``(seed, epoch, index)``.
    Returns
    -------
    TrainLoader
        Iterable over the epoch chosen with ``set_epoch(epoch)``; ``len()`` batches,
        each a packed batch (see :mod:`.device_batch`; ``device_batch.to_devices`` or
        ``unpack`` gives the dense arrays).
    """
    sizes = sorted(set(int(s) for s in shapes) | {int(data_shape)}) if random_shape \
        else [int(data_shape)]
    transforms = {s: YOLO3FastTrainTransform(s, s, net, mean=mean, std=std, mixup=True,
                                             augment=augment, max_expand=max_expand)
                  for s in sizes}
    plan = EpochPlan(len(dataset), batch_size, shuffle, seed, num_parts, part_index,
                     last_batch)
    return TrainLoader(dataset, transforms, plan, data_shape, num_workers, random_shape,
                       shape_interval, [int(s) for s in shapes], mixup)


def make_val_loader(dataset, batch_size, data_shape, num_workers=0,
                    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """Validation loader yielding ``(image (B, 3, S, S), label (B, N, 5+) padded -1)``."""
    return ValLoader(dataset, batch_size, data_shape, num_workers, mean, std)
