"""Reused, pre-faulted shared memory that carries batches from loader workers to the trainer.

A fresh memory-mapped file per batch costs the main process a page fault for every 4 KiB
it first touches (~70% of its per-image cost when it was measured, see docs/data.md). A
ring of slots made once and touched once costs nothing per batch but a few views:

* The slots are anonymous shared mappings made by the main process before it forks the
  workers, which inherit them: nothing is named in /dev/shm, so nothing can be left
  behind, whatever way the process ends.
* The main process hands each task a free slot; the worker writes the batch straight
  into it (this is its batchify) and returns only the layout.
* The main process wraps views of the slot as NDArrays without a copy. The slot is free
  again when every array viewing it is gone: MXNet drops a zero-copy NDArray's NumPy
  source only after the last pending operation that reads it, so a slot is never
  rewritten while the training step or a host-to-device copy still reads it.
* No free slot (a caller keeps many batches, e.g. ``list(loader)``): the task gets
  none, and the worker writes a file instead (the slower path, same values).
"""
import collections
import mmap
import weakref

import numpy as np

__all__ = ['BatchRing', 'batch_layout']

_ALIGN = 64
_PAGE = mmap.PAGESIZE


def batch_layout(specs):
    """Byte offsets of arrays packed one after another, each 64-byte aligned.

    Parameters
    ----------
    specs : sequence of (shape tuple, numpy dtype)

    Returns
    -------
    (layout, total_bytes)
        layout: list of (shape, dtype str, offset).
    """
    layout, offset = [], 0
    for shape, dtype in specs:
        dtype = np.dtype(dtype)
        layout.append((tuple(int(s) for s in shape), dtype.str, offset))
        offset += -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // _ALIGN) * _ALIGN
    return layout, offset


class BatchRing:
    """`num_slots` shared buffers of `capacity` bytes, reused batch after batch.

    Parameters
    ----------
    num_slots : int
        Batches in flight plus those the consumer still holds; more are not needed.
    capacity : int
        Bytes of the largest batch expected (bigger ones take the file path).
    """

    def __init__(self, num_slots, capacity):
        self.capacity = max(int(capacity), _PAGE)
        self._maps = [mmap.mmap(-1, self.capacity) for _ in range(int(num_slots))]
        for buf in self._maps:  # touch every page once, here, instead of per batch
            np.frombuffer(buf, np.uint8)[::_PAGE] = 0
        # deque append/popleft are atomic: releases may come from MXNet's engine threads
        self._free = collections.deque(range(len(self._maps)))
        self._in_flight = set()

    def __len__(self):
        return len(self._maps)

    @property
    def free_slots(self):
        return len(self._free)

    def acquire(self):
        """A free slot index for a new task, or None when all are in use."""
        try:
            slot = self._free.popleft()
        except IndexError:
            return None
        self._in_flight.add(slot)
        return slot

    def release(self, slot):
        """Give back a slot whose batch was never wrapped (unused, abandoned, failed)."""
        if slot in self._in_flight:
            self._in_flight.discard(slot)
            self._free.append(slot)

    def release_in_flight(self):
        """After the workers were stopped: no task can still write into a slot."""
        for slot in list(self._in_flight):
            self.release(slot)

    def views(self, slot, layout):
        """Writable arrays of `layout` inside `slot` (worker side: write the batch here)."""
        buf = self._maps[slot]
        return [np.frombuffer(buf, np.dtype(dtype), int(np.prod(shape, dtype=np.int64)),
                              offset).reshape(shape) for shape, dtype, offset in layout]

    def wrap(self, slot, layout):
        """The batch in `slot` as arrays (main side); the slot frees when all are gone.

        Every array is a view of one per-batch owner array; NumPy keeps that owner as
        the base of each view, so its finaliser runs when the last view dies.
        """
        self._in_flight.discard(slot)
        owner = np.frombuffer(self._maps[slot], np.uint8)
        weakref.finalize(owner, self._free.append, slot).atexit = False
        return tuple(
            owner[offset:offset + int(np.prod(shape, dtype=np.int64)) *
                  np.dtype(dtype).itemsize].view(np.dtype(dtype)).reshape(shape)
            for shape, dtype, offset in layout)

    def __getstate__(self):
        raise TypeError('a BatchRing is shared with worker processes by fork only')
