"""Batchify: per-sample arrays into batch arrays, in place where the batch will live.

A field is ``(kind, dtype, per-sample arrays[, min rows[, pad value]])``: 'stack' fields
become (B, ...), 'pad' fields (B, max(rows, min rows), K) padded with -1 (GluonCV's
``Pad``) unless another pad value is given. Filling preallocated arrays lets a loader
worker write a batch straight into shared memory (a ring slot) instead of stacking it
and copying it there. Files in /dev/shm are the fallback
transport when no slot fits.
"""
import os
import tempfile

import numpy as np

from .device_batch import ASSIGNED_ROWS

__all__ = ['pad_stack', 'batch_specs', 'fill_batch', 'assemble', 'train_fields',
           'spool_dir', 'to_file', 'from_file']


def pad_stack(arrays, pad_val=-1):
    """Stack (N_i, K) arrays into (B, max(max N_i, 1), K), padding rows with `pad_val`."""
    rows = max(max(len(a) for a in arrays), 1)
    out = np.full((len(arrays), rows, arrays[0].shape[1]), pad_val, np.float32)
    for i, a in enumerate(arrays):
        out[i, :len(a)] = a
    return out


def batch_specs(fields):
    """(shape, dtype) of each batch array of `fields` (see the module docstring): 'stack'
    fields are (B, ...), 'pad' fields (B, max(rows, min rows), K)."""
    specs = []
    for kind, dtype, samples, *pad in fields:
        if kind == 'stack':
            specs.append(((len(samples),) + samples[0].shape, dtype))
        else:
            rows = max(max(len(a) for a in samples), *(pad[:1] or [1]))
            specs.append(((len(samples), rows, samples[0].shape[1]), dtype))
    return specs


def fill_batch(fields, arrays):
    """Batchify `fields` into `arrays` (preallocated, e.g. in a ring slot); padding -1 or
    the field's pad value."""
    for (kind, _, samples, *pad), out in zip(fields, arrays):
        if kind == 'pad':
            out.fill(pad[1] if len(pad) > 1 else -1)
        for i, sample in enumerate(samples):
            out[i, :len(sample)] = sample
    return arrays


def assemble(fields):
    """Batchify `fields` into fresh arrays (the in-process path)."""
    return fill_batch(fields, [np.empty(shape, dtype) for shape, dtype in batch_specs(fields)])


def train_fields(outs):
    """Batchify fields of a packed training batch (see :mod:`.device_batch`) from
    ``transform.apply_packed`` outputs (image, targets, gt_boxes)."""
    return [('stack', np.uint8, [o[0] for o in outs]),
            ('pad', np.float32, [o[2] for o in outs]),
            ('pad', np.float32, [o[1] for o in outs], 1 + ASSIGNED_ROWS, 0)]


def spool_dir():
    """A private folder in memory-backed /dev/shm (else the temp dir) for batch files."""
    base = '/dev/shm' if os.path.isdir('/dev/shm') else None
    return tempfile.mkdtemp(prefix='gluoncv_fp16_batches_', dir=base)


def to_file(arrays, folder):
    """Write a batch to one file in `folder`; returns what the parent needs to read it.

    The fallback when no ring slot is free or big enough. A 608-px batch with targets is
    ~50 MB: through the result pipe (pickle, write, read, unpickle) that is slower than
    computing it; a tmpfs file costs one copy in and is mapped (not copied) by the parent.
    """
    fd, path = tempfile.mkstemp(dir=folder)
    layout = []
    with os.fdopen(fd, 'wb') as f:
        for a in arrays:
            layout.append((a.shape, a.dtype.str, f.tell()))
            a.tofile(f)
    return path, layout


def from_file(path, layout):
    """Map the batch file (no copy; the mapping outlives the file's name) and remove it."""
    try:
        return tuple(np.memmap(path, np.dtype(dtype), 'c', offset, tuple(shape))
                     if int(np.prod(shape)) else np.zeros(shape, np.dtype(dtype))
                     for shape, dtype, offset in layout)
    finally:
        os.remove(path)
