"""Compare two parameter files tensor by tensor (FP16 vs FP32 runs, GPU vs CPU, resumes).

The per-tensor figure that is held against the tolerance is the *scaled* error

    max_rel = max|a - b| / max(max|a|, max|b|)

i.e. the worst absolute difference measured in units of the tensor's own magnitude.
Element-wise |a - b| / |b| would explode on weights that are nearly zero; the scaled
error does not, and it has a clean meaning for this project: rounding an FP32 tensor to
FP16 moves it by at most 2**-11 = 4.9e-4 of its largest value, so an FP16 copy of an
FP32 file stays under the default tolerance 5e-4 and anything above it is a real
difference. Both tensors are compared in float64.

Only ``.params`` files (``mx.nd.save`` / ``save_parameters`` format) are read here;
project checkpoints are zip files read by the training package, which callers pass in as
`checkpoint_reader` (this module sits below gluoncv_fp16.train and does not import it).
"""
import logging
import os
import zipfile
from collections import namedtuple

import mxnet as mx
import numpy as np

from ..errors import ParamFileError

__all__ = ['ParamFileError', 'ParamDiff', 'DiffReport', 'read_param_file',
           'compare_params', 'update_error', 'DEFAULT_TOL']

logger = logging.getLogger(__name__)

DEFAULT_TOL = 5e-4  # just above FP16's unit roundoff 2**-11, see module doc


ParamDiff = namedtuple('ParamDiff', 'name shape dtype_a dtype_b max_abs max_rel')


def read_param_file(path, checkpoint_reader=None):
    """Parameters by name, as numpy arrays in their stored dtype.

    Parameters
    ----------
    path : str
        A ``.params`` file, or (with `checkpoint_reader`) a project checkpoint.
    checkpoint_reader : callable, optional
        ``path -> dict[str, numpy.ndarray]`` for zip checkpoints, e.g.
        ``gluoncv_fp16.checkpoint.read_params``.

    Raises
    ------
    ParamFileError
        Missing file, unreadable content, or unnamed arrays.
    """
    if not os.path.isfile(path):
        raise ParamFileError("no such file: '{}'".format(path))
    if zipfile.is_zipfile(path):
        if checkpoint_reader is None:
            raise ParamFileError("'{}' is a zip file (a checkpoint?); pass a "
                                 "checkpoint_reader to read it".format(path))
        return {k: np.asarray(v) for k, v in checkpoint_reader(path).items()}
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise ParamFileError("'{}' is not an MXNet parameter file ({})".format(
            path, _last_line(err))) from None
    if not isinstance(loaded, dict) or not loaded:
        raise ParamFileError("'{}' holds no named parameters (got {} unnamed arrays)".format(
            path, len(loaded)))
    return {_strip_prefix(k): v.asnumpy() for k, v in loaded.items()}


def _last_line(err):
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _strip_prefix(name):
    # Module-style files (export) name parameters 'arg:...' / 'aux:...'.
    return name.split(':', 1)[1] if name.startswith(('arg:', 'aux:')) else name


def _scaled_error(a, b):
    """(max_abs, max_rel) of two same-shape arrays; see module doc for max_rel."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(finite_a, finite_b) or \
            not np.array_equal(a[~finite_a], b[~finite_b], equal_nan=True):
        return float('inf'), float('inf')  # NaN/inf in one file only: worst possible
    if not finite_a.any():
        return 0.0, 0.0
    a, b = a[finite_a], b[finite_b]
    max_abs = float(np.abs(a - b).max())
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
    return max_abs, (max_abs / scale if scale > 0 else 0.0)


class DiffReport:
    """Result of :func:`compare_params`.

    Attributes
    ----------
    rows : list of ParamDiff
        Parameters present in both with equal shapes, worst `max_rel` first.
    only_a, only_b : list of str
        Names present in one file only.
    shape_mismatch : list of (name, shape_a, shape_b)
    """

    def __init__(self, rows, only_a, only_b, shape_mismatch):
        self.rows = sorted(rows, key=lambda r: (-r.max_rel, -r.max_abs, r.name))
        self.only_a, self.only_b, self.shape_mismatch = only_a, only_b, shape_mismatch

    @property
    def structure_matches(self):
        return not (self.only_a or self.only_b or self.shape_mismatch)

    def above(self, tol):
        """Rows whose scaled error exceeds `tol`."""
        return [r for r in self.rows if not r.max_rel <= tol]

    def passed(self, tol=DEFAULT_TOL):
        """True when names and shapes agree and every tensor is within `tol`."""
        return self.structure_matches and not self.above(tol)

    def format(self, tol=DEFAULT_TOL, top=None):
        """Human-readable lines: table (worst first), mismatches, one summary line."""
        shown = self.rows if top is None else self.rows[:top]
        width = max([len(r.name) for r in shown] + [4])
        lines = ['{:<{w}}  {:>16}  {:>15}  {:>10}  {:>10}'.format(
            'name', 'shape', 'dtype A/B', 'max_abs', 'max_rel', w=width)]
        for r in shown:
            lines.append('{:<{w}}  {:>16}  {:>15}  {:>10.3g}  {:>10.3g}{}'.format(
                r.name, 'x'.join(map(str, r.shape)) or 'scalar',
                '{}/{}'.format(r.dtype_a, r.dtype_b), r.max_abs, r.max_rel,
                '  > tol' if not r.max_rel <= tol else '', w=width))
        if top is not None and len(self.rows) > top:
            lines.append('... {} more'.format(len(self.rows) - top))
        lines.extend(self._mismatch_lines())
        lines.append(self.summary(tol))
        return lines

    def _mismatch_lines(self):
        lines = ['only in A: {}'.format(n) for n in self.only_a]
        lines += ['only in B: {}'.format(n) for n in self.only_b]
        lines += ['shape differs: {} A{} B{}'.format(n, tuple(sa), tuple(sb))
                  for n, sa, sb in self.shape_mismatch]
        if self.only_a and self.only_b and not self.rows:
            lines.append('no parameter names in common: different networks, or files saved '
                         'with different name styles (save_parameters vs export)?')
        return lines

    def summary(self, tol=DEFAULT_TOL):
        worst = self.rows[0] if self.rows else None
        return '{}: {} compared, {} above tol {:g}, {} only in A, {} only in B, {} shape ' \
               'mismatches; worst max_rel {} ({})'.format(
                   'OK' if self.passed(tol) else 'FAIL', len(self.rows),
                   len(self.above(tol)), tol, len(self.only_a), len(self.only_b),
                   len(self.shape_mismatch),
                   '{:.3g}'.format(worst.max_rel) if worst else '-',
                   worst.name if worst else 'nothing compared')


def compare_params(params_a, params_b):
    """Compare two ``name -> array`` dicts (any float dtypes) into a :class:`DiffReport`."""
    rows, shape_mismatch = [], []
    for name in sorted(set(params_a) & set(params_b)):
        a, b = np.asarray(params_a[name]), np.asarray(params_b[name])
        if a.shape != b.shape:
            shape_mismatch.append((name, a.shape, b.shape))
            continue
        max_abs, max_rel = _scaled_error(a, b)
        rows.append(ParamDiff(name, a.shape, a.dtype.name, b.dtype.name, max_abs, max_rel))
    return DiffReport(rows, sorted(set(params_a) - set(params_b)),
                      sorted(set(params_b) - set(params_a)), shape_mismatch)


def update_error(start, params_a, params_b, names=None):
    """How far run B's training update is from run A's, both started from `start`.

    Returns ``(rel_l2, cosine)`` over all `names` (default: the names in all three)
    taken together: ``||dB - dA|| / ||dA||`` and the cosine between dA and dB, where
    ``dX = X - start``. One figure for the whole step: per tensor, a small update that
    is the residue of large cancelling terms (e.g. an early BatchNorm's beta) can differ
    by its own size under FP16 rounding while the update as a whole agrees closely.
    """
    names = sorted(names if names is not None
                   else set(start) & set(params_a) & set(params_b))
    if not names:
        raise ValueError('no parameters to compare')
    da = np.concatenate([(np.asarray(params_a[n], np.float64) -
                          np.asarray(start[n], np.float64)).ravel() for n in names])
    db = np.concatenate([(np.asarray(params_b[n], np.float64) -
                          np.asarray(start[n], np.float64)).ravel() for n in names])
    norm_a, norm_b = float(np.linalg.norm(da)), float(np.linalg.norm(db))
    if norm_a == 0.0:
        raise ValueError('run A did not change its parameters; nothing to compare against')
    cosine = float(da @ db) / (norm_a * norm_b) if norm_b > 0 else 0.0
    return float(np.linalg.norm(db - da)) / norm_a, cosine
