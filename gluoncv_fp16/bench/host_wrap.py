"""What wrapping a loader batch's host arrays as NDArrays costs the main thread.

The training loader hands the main process NumPy arrays in shared memory;
:func:`gluoncv_fp16.data.device_batch.ndarray_view` wraps each as an NDArray without a
copy, through the public ``mx.nd.from_numpy(array, zero_copy=True)``. This measures that
route next to the **former route**, the ctypes one of commit 730231f (a hand-built
DLPack tensor passed to ``MXNDArrayFromDLPackEx``, with hand-made ``Py_IncRef``). The
former code is not in the package: it is read from the git history (``git show``) and
imported for the measurement only, so a checkout with its history is needed.

Rounds interleave the two routes (the order alternates), each wrapping `batches` fresh
views of a realistic packed batch. Time is the main thread's CPU time
(``time.thread_time``), which a loaded machine's preemption does not inflate as it does
wall time. The table gives the median per array and per batch, the interquartile range
over rounds, and the ratio per round.

    python -m gluoncv_fp16.bench.host_wrap --rounds 2000 --batches 5
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import mxnet as mx
import numpy as np

from ..data.device_batch import ASSIGNED_ROWS, ndarray_view
from ..data.targets import ASSIGNED_COLUMNS
from .machine import ROOT, commit, cpu_model

__all__ = ['FORMER_COMMIT', 'packed_batch', 'former_route', 'measure', 'report', 'main']

FORMER_COMMIT = '730231f'  # the last commit whose device_batch wrapped arrays via ctypes
_FORMER_PATH = 'gluoncv_fp16/data/device_batch.py'


def packed_batch(batch_size=8, size=416, boxes=16):
    """The three arrays of a packed training batch (see :mod:`..data.device_batch`):
    image uint8 (B, 3, S, S), gt_boxes float32 (B, M, 4), targets float32 (B, 1 + K, 8)."""
    return (np.zeros((batch_size, 3, size, size), np.uint8),
            np.full((batch_size, boxes, 4), -1, np.float32),
            np.zeros((batch_size, 1 + ASSIGNED_ROWS, ASSIGNED_COLUMNS), np.float32))


def former_route(commit_id=FORMER_COMMIT):
    """``ndarray_view`` as it was at `commit_id`, imported from the git history.

    Returns
    -------
    callable or str
        The former function, or a one-line reason why it is unavailable (no git, no
        history in this checkout).
    """
    try:
        shown = subprocess.run(['git', '-C', ROOT, 'show', '{}:{}'.format(commit_id, _FORMER_PATH)],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return 'git is unavailable ({})'.format(err)
    if shown.returncode != 0:
        return 'commit {} is not in this checkout ({})'.format(
            commit_id, shown.stderr.strip().splitlines()[-1:] or '?')
    folder = tempfile.mkdtemp(prefix='gluoncv_fp16_former_')
    path = os.path.join(folder, 'device_batch_{}.py'.format(commit_id))
    with open(path, 'w') as f:
        f.write(shown.stdout)
    # a module of gluoncv_fp16.data, so that its relative imports resolve as they did
    name = 'gluoncv_fp16.data.former_device_batch_{}'.format(commit_id)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.ndarray_view


def _percentile(values, q):
    return float(np.percentile(np.asarray(values, np.float64), q))


def measure(routes, rounds=2000, batches=5, arrays=None):
    """Main-thread CPU seconds per batch of each route, one value per round, rounds
    interleaved.

    Parameters
    ----------
    routes : dict of str -> callable
        ``name -> wrap(numpy array) -> NDArray``.
    rounds, batches : int
        Interleaved rounds; batches wrapped per route and round (fresh views of `arrays`
        each time, made outside the timed part, as the loader's are).
    arrays : tuple of numpy.ndarray
        One batch (default :func:`packed_batch`).

    Returns
    -------
    dict of str -> list of float
    """
    arrays = packed_batch() if arrays is None else arrays
    names = list(routes)
    times = {name: [] for name in names}
    for r in range(rounds + 1):  # round 0 warms up
        for name in names if r % 2 == 0 else names[::-1]:
            views = [[a.view() for a in arrays] for _ in range(batches)]
            wrap = routes[name]
            start = time.thread_time()
            wrapped = [[wrap(a) for a in batch] for batch in views]
            elapsed = time.thread_time() - start
            del wrapped, views
            mx.nd.waitall()
            if r:
                times[name].append(elapsed / batches)
    return times


def report(times, arrays_per_batch, current, former=None):
    """Lines of the table: per array and per batch (us CPU), median and interquartile
    range (p25-p75) over rounds, and the ratio current / former per round."""
    lines = ['  {:<46} {:>9} {:>9}   {}'.format('route', 'us/array', 'us/batch',
                                                'us/batch p25-p75')]
    for name, values in times.items():
        per_batch = [v * 1e6 for v in values]
        lines.append('  {:<46} {:>9.1f} {:>9.1f}   {:.1f}-{:.1f}'.format(
            name, _percentile(per_batch, 50) / arrays_per_batch, _percentile(per_batch, 50),
            _percentile(per_batch, 25), _percentile(per_batch, 75)))
    if former in times:
        ratios = [a / b for a, b in zip(times[current], times[former])]
        extra = [(a - b) * 1e6 for a, b in zip(times[current], times[former])]
        lines.append('  current / former: {:.2f}x per round (p25-p75 {:.2f}-{:.2f}x); '
                     '{:+.1f} us CPU per batch ({:+.1f} to {:+.1f})'.format(
                         _percentile(ratios, 50), _percentile(ratios, 25),
                         _percentile(ratios, 75), _percentile(extra, 50),
                         _percentile(extra, 25), _percentile(extra, 75)))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=2000, help='interleaved rounds')
    parser.add_argument('--batches', type=int, default=5, help='batches per route and round')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--size', type=int, default=416)
    parser.add_argument('--boxes', type=int, default=16, help='gt_boxes rows per image')
    args = parser.parse_args(argv)
    arrays = packed_batch(args.batch_size, args.size, args.boxes)
    current = 'mx.nd.from_numpy(zero_copy=True) (current)'
    former = 'ctypes MXNDArrayFromDLPackEx (former, {})'.format(FORMER_COMMIT)
    routes = {current: ndarray_view}
    former_view = former_route()
    if callable(former_view):
        routes[former] = former_view
    print('wrapping a packed batch\'s host arrays as NDArrays (main-thread CPU; commit {}, {}; '
          '{} interleaved rounds of {} batches; batch {} at {} px: {})'.format(
              commit(), cpu_model(), args.rounds, args.batches, args.batch_size, args.size,
              ', '.join('{} {}'.format(a.dtype, a.shape) for a in arrays)))
    if not callable(former_view):
        print('  former route not measured: {}'.format(former_view))
    times = measure(routes, args.rounds, args.batches, arrays)
    for line in report(times, len(arrays), current, former):
        print(line)


if __name__ == '__main__':
    main()
