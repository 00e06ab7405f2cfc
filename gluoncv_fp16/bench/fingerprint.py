"""A numerics fingerprint of the README's main command: its first steps, recorded.

The README's command and a plain-FP16 variant of it run for a few steps each, as children
of ``train_yolo3.py`` (``--max-iters N --no-self-check --no-plots``, a temporary
``--save-prefix``, and the built-in synthetic set generated afresh into a temporary
``--dataset-root``, so that a stale ``~/.cache`` copy cannot hide a change of the
generator). Their per-step rows of ``*_steps.csv`` are the fingerprint:

* ``readme``: the command as it is, 70 steps: 50 in FP32 (``--fp32-warmup-epochs 2``),
  then the switch to FP16, whose dynamic loss scale backs off from 32768 over the skipped
  first FP16 steps, and its first applied FP16 steps.
* ``fp16``: the command with ``--fp32-warmup-epochs 0`` (FP16 from the first step), 20
  steps. The loss scale halves from 32768 to 1 over the first 15 and skips all of them: it
  checks the FP16 path (half-precision loss, scaler, master weights) from the initial
  weights, where it is portable.

It is checked in two parts, because from a fresh initialisation the first weight update
is dominated by rounding (docs/distributed.md, "Why the runs start from trained
weights"): the update of AVX2 kernels differs from that of AVX-512 ones by about 30 %,
and the losses after it by up to 40 % (docs/results.md, "Numerics fingerprint").

* Portable, with a tolerance that holds across instruction sets: the rows computed on the
  initial weights (``readme`` step 1, ``fp16`` steps 1-15: initialisation, data,
  transforms, targets, loss, the FP16 path), the loss scale and skipped flags before the
  first CPU-dependent skip decision (``readme`` steps 1-50, before its first FP16 step;
  ``fp16`` steps 1-15, before step 16), the learning rate of every step before it (the
  schedule: ``--lr``, warm-up, cosine), and the precision phase (fp32 or fp16) of every
  step (the switch of ``--fp32-warmup-epochs``).
* Trajectory, exact: every row of both segments, against a recording made on the same CPU
  (model and instruction-set flags) with the same ``DNNL_MAX_CPU_ISA``; the runs are
  bit-reproducible there, so any change of the optimizer, weight decay, master weights,
  gradients or the precision switch shows. On a CPU or cap without a recording it is not
  judged.

    python -m gluoncv_fp16.bench.fingerprint --check tests/data/readme_fingerprint.json
    python -m gluoncv_fp16.bench.fingerprint --write tests/data/readme_fingerprint.json
    python -m gluoncv_fp16.bench.fingerprint --add tests/data/readme_fingerprint.json

``--check`` prints the largest differences and a verdict (exit 1 if the fingerprint
moved). ``--write`` records it afresh under each cap of ``--caps`` (after an intended
numerics change, with the docs' figures re-measured in the same commit), keeping the
stored tolerances; recordings of other CPUs are dropped (they are stale after such a
change). ``--add`` adds this CPU's trajectory (under the current ``DNNL_MAX_CPU_ISA``) once
its portable part has been checked.
"""
import argparse
import collections
import csv
import datetime
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

from .machine import cap_env, commit, cpu_features, cpu_model

__all__ = ['README_ARGS', 'SEGMENTS', 'Segment', 'FingerprintError', 'segment_command',
           'run_segment', 'fingerprint', 'relative_difference', 'machine_key', 'compare',
           'describe', 'record', 'load', 'main']

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = os.path.join(ROOT, 'train_yolo3.py')
# The README's main command (tests/test_fingerprint.py checks that README.md has it).
README_ARGS = ('--fp16', '--gpus', '', '--dataset', 'synthetic', '--network', 'mobilenet0.25',
               '--data-shape', '96', '--batch-size', '8', '--epochs', '50',
               '--fp32-warmup-epochs', '2', '--lr', '0.005', '--lr-mode', 'cosine',
               '--warmup-epochs', '5', '--max-expand', '1', '--no-random-shape', '-j', '1',
               '--seed', '1', '--save-prefix', 'runs/demo/')
Segment = collections.namedtuple('Segment', 'changes steps portable schedule')
Segment.__doc__ = """One run of the fingerprint.

changes : ``(flag, value)`` pairs applied to the README command (as `changes` of
    :func:`segment_command`)
steps : rows recorded
portable : leading rows computed on the initial weights (no update before them)
schedule : leading rows before the first CPU-dependent skip decision: their learning rate,
    loss scale and skipped flag follow from the command alone
"""
SEGMENTS = {'readme': Segment((), 70, 1, 50),
            'fp16': Segment((('--fp32-warmup-epochs', '0'),), 20, 15, 15)}
COLUMNS = ('iteration', 'obj_loss', 'center_loss', 'scale_loss', 'cls_loss', 'lr',
           'loss_scale', 'skipped', 'phase')
NUMBERS = COLUMNS[1:-1]  # compared as relative differences; 'phase' (fp32/fp16) must be equal
LOSSES = ('obj_loss', 'center_loss', 'scale_loss', 'cls_loss')


class FingerprintError(RuntimeError):
    """A child run failed, or a stored fingerprint cannot be compared with this one."""


def segment_command(segment, prefix, dataset_root, changes=None, steps=None):
    """``train_yolo3.py`` arguments of one segment.

    Parameters
    ----------
    segment : str
        A key of :data:`SEGMENTS`.
    prefix, dataset_root : str
        The run's ``--save-prefix`` and ``--dataset-root``.
    changes : dict, optional
        ``{flag: value}``: the value replaces the README's one, or the flag is added
        (``{'--lr': '0.0045'}``; value None: a flag without value); how the negative
        controls alter the command.
    steps : int, optional
        Fewer steps than the segment has (a control that needs only the first rows).
    """
    spec = SEGMENTS[segment]
    args = list(README_ARGS)
    for flag, value in {**dict(spec.changes), **(changes or {}), '--save-prefix': prefix}.items():
        if flag in args and value is None:
            raise FingerprintError('{} is in the README command with a value: give the value '
                                   'to change it to, e.g. {}=VALUE'.format(flag, flag))
        if flag in args:
            args[args.index(flag) + 1] = str(value)
        else:
            args += [flag] if value is None else [flag, str(value)]
    return args + ['--dataset-root', dataset_root, '--max-iters', str(steps or spec.steps),
                   '--no-self-check', '--no-plots']


def run_segment(segment, dataset_root, changes=None, cap=None, steps=None):
    """Run one segment in a child process; returns its rows, one dict of :data:`COLUMNS`
    per step. `cap`: ``DNNL_MAX_CPU_ISA`` of the child (``'default'``: none; None: as
    this process has it); `changes`, `steps`: see :func:`segment_command`."""
    steps = steps or SEGMENTS[segment].steps
    with tempfile.TemporaryDirectory(prefix='fingerprint_') as folder:
        cmd = [sys.executable, TRAIN_SCRIPT] + segment_command(
            segment, folder + os.sep, dataset_root, changes, steps)
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=cap_env(cap))
        found = glob.glob(os.path.join(glob.escape(folder), '*_steps.csv'))
        if done.returncode != 0 or not found:
            raise FingerprintError('{} exited with {}:\n{}'.format(
                shlex.join(cmd), done.returncode, (done.stdout + done.stderr)[-3000:]))
        with open(found[0], newline='') as f:
            rows = [{c: _PARSE.get(c, float)(r[c]) for c in COLUMNS}
                    for r in csv.DictReader(f)]
    if len(rows) != steps:
        raise FingerprintError('{}: {} steps recorded, {} expected'.format(
            shlex.join(cmd), len(rows), steps))
    return rows


_PARSE = {'iteration': int, 'skipped': int, 'phase': str}


def fingerprint(segments=tuple(SEGMENTS), changes=None, dataset_root=None, cap=None,
                steps=None):
    """``{segment: rows}`` of the README command (`changes`, `steps`: see
    :func:`segment_command`; `cap`: see :func:`run_segment`). The synthetic set is
    generated into a temporary folder unless `dataset_root` holds one."""
    if dataset_root is None:
        with tempfile.TemporaryDirectory(prefix='fingerprint_data_') as folder:
            return fingerprint(segments, changes, _generated_data(folder), cap, steps)
    return {s: run_segment(s, dataset_root, changes, cap, steps) for s in segments}


def _generated_data(folder):
    """The built-in synthetic set (its default settings) generated under `folder`."""
    from ..data import ensure_synthetic
    return ensure_synthetic(os.path.join(folder, 'synthetic'))


def relative_difference(a, b):
    """``|a - b| / max(|a|, |b|)``; 0 when both are 0."""
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale else 0.0


def machine_key(cap=None):
    """The CPU (model and instruction-set flags) and the oneDNN cap (`cap`, or this
    process's ``DNNL_MAX_CPU_ISA``): a trajectory recording holds where they match."""
    return dict(cpu=cpu_model(), cpu_features=cpu_features(),
                dnnl_max_cpu_isa=cap or os.environ.get('DNNL_MAX_CPU_ISA') or 'default')


def _largest(pairs, quantities):
    """``{quantity: (largest relative difference, iteration)}`` over row pairs."""
    return {q: max((relative_difference(m[q], s[q]), m['iteration']) for m, s in pairs)
            for q in quantities if pairs}


def compare(stored, measured, key=None):
    """Compare measured rows with a stored fingerprint (:func:`load`).

    Parameters
    ----------
    stored : dict
        The document of :func:`record`.
    measured : dict
        ``{segment: rows}`` as :func:`fingerprint` returns.
    key : dict, optional
        :func:`machine_key` of the measurement (default: this process's).

    Returns
    -------
    dict
        Per segment: ``steps`` (rows compared: `measured` may hold fewer than stored),
        ``portable`` (quantity -> ``(largest relative difference,
        iteration)`` against the first recording, over the portable rows; ``lr`` over the
        schedule rows), ``exact`` (schedule rows whose loss scale or skipped flag
        differ), ``phases`` (rows whose precision phase differs), ``tolerance``,
        ``portable_ok``; ``trajectory`` (as ``portable``, over
        every row, against the recording with the same machine key; None without one),
        ``trajectory_ok`` (None without one); ``spread``: the largest relative difference
        over every row against the first recording, for information (``(difference,
        iteration)``; not judged: it is not portable).
    """
    key = key or machine_key()
    reference = stored['recordings'][0]['rows']
    same = [r['rows'] for r in stored['recordings'] if _same_key(r, key)]
    report = {}
    for segment, rows in measured.items():
        if segment not in reference:
            raise FingerprintError('segment {!r} is not in the stored fingerprint (it has {})'
                                   .format(segment, ', '.join(reference)))
        spec = stored['segments'][segment]
        measured_steps = [r['iteration'] for r in rows]
        if measured_steps != [r['iteration'] for r in reference[segment]][:len(rows)]:
            raise FingerprintError('segment {}: steps {} measured, {} stored: re-record the '
                                   'fingerprint with this code'.format(
                                       segment, measured_steps,
                                       [r['iteration'] for r in reference[segment]]))
        pairs = list(zip(rows, reference[segment]))
        portable = dict(_largest(pairs[:spec['portable_steps']], LOSSES),
                        **_largest(pairs[:spec['schedule_steps']], ('lr',)))
        exact = [m['iteration'] for m, s in pairs[:spec['schedule_steps']]
                 if (m['loss_scale'], m['skipped']) != (s['loss_scale'], s['skipped'])]
        # The precision phase of every step follows from the command (--fp32-warmup-epochs)
        phases = [m['iteration'] for m, s in pairs if m['phase'] != s['phase']]
        entry = dict(steps=len(rows), portable=portable, exact=exact, phases=phases,
                     tolerance=spec['tolerance'],
                     spread=max(_largest(pairs, NUMBERS).values()),
                     portable_ok=not exact and not phases and all(
                         d <= spec['tolerance'] for d, _ in portable.values()),
                     trajectory=None, trajectory_ok=None)
        if same:
            entry['trajectory'] = _largest(list(zip(rows, same[0][segment])), NUMBERS)
            entry['trajectory_ok'] = all(d <= stored['trajectory_tolerance']
                                         for d, _ in entry['trajectory'].values())
        report[segment] = entry
    return report


def _moved(report):
    return [s for s, r in report.items() if not r['portable_ok'] or r['trajectory_ok'] is False]


def _steps(n):
    return 'step 1' if n == 1 else 'steps 1-{}'.format(n)


def describe(report, stored):
    """The comparison as text: per segment the largest differences, then the verdict."""
    lines = []
    first = stored['recordings'][0]
    for segment, r in report.items():
        spec = stored['segments'][segment]
        schedule = min(spec['schedule_steps'], r['steps'])  # a control may run fewer steps
        lines.append('{}: portable part (losses of {}, lr of {}), tolerance {:g}:'.format(
            segment, _steps(min(spec['portable_steps'], r['steps'])), _steps(schedule),
            r['tolerance']))
        lines += ['  {:<12} {:.2e} (step {})'.format(q, d, it)
                  for q, (d, it) in r['portable'].items()]
        lines.append('  loss_scale and skipped of {}: {}'.format(
            _steps(schedule),
            'differ at steps {}'.format(r['exact']) if r['exact'] else 'equal'))
        lines.append('  precision phase of {}: {}'.format(
            _steps(r['steps']),
            'differs at steps {}'.format(r['phases']) if r['phases'] else 'equal'))
        lines.append('  {} against the first recording ({}, cap {}; not judged across CPUs): '
                     'largest relative difference {:.2e} (step {})'.format(
                         _steps(r['steps']), first['cpu'], first['dnnl_max_cpu_isa'],
                         *r['spread']))
        if r['trajectory'] is None:
            lines.append('  trajectory ({}): not judged, no recording for this CPU and '
                         'cap'.format(_steps(r['steps'])))
        else:
            d, it = max(r['trajectory'].values())
            lines.append('  trajectory ({}) against the recording for this CPU and cap: largest '
                         'relative difference {:.2e} (step {}), tolerance {:g}'.format(
                             _steps(r['steps']), d, it, stored['trajectory_tolerance']))
    moved = _moved(report)
    if moved:
        lines.append('fingerprint MOVED ({}): if the change is intended, re-measure the '
                     'docs\' figures and re-record'.format(', '.join(moved)))
    else:
        lines.append('fingerprint matches ({})'.format('trajectory judged too' if all(
            r['trajectory'] is not None for r in report.values()) else 'portable part only'))
    return '\n'.join(lines)


def record(recordings, tolerances, trajectory_tolerance):
    """The JSON document of a fingerprint.

    Parameters
    ----------
    recordings : list of (dict, dict)
        ``(machine_key, {segment: rows})``; the first is the reference of the portable
        part. The key may carry the ``date`` and ``commit`` of an earlier recording.
    tolerances : dict
        Segment -> relative tolerance of its portable part.
    trajectory_tolerance : float
        Relative tolerance of the trajectory on the same machine and cap.
    """
    return dict(
        what='first steps of the README main command (gluoncv_fp16/bench/fingerprint.py)',
        command='python train_yolo3.py ' + shlex.join(README_ARGS),
        columns=list(COLUMNS),
        segments={s: dict(command='python train_yolo3.py ' + shlex.join(segment_command(
            s, '<temp>/', '<generated>')), steps=spec.steps, portable_steps=spec.portable,
            schedule_steps=spec.schedule, tolerance=tolerances[s])
            for s, spec in SEGMENTS.items()},
        trajectory_tolerance=trajectory_tolerance,
        recordings=[dict(dict(date=datetime.date.today().isoformat(), commit=commit()), **key,
                         rows={s: [[r[c] for c in COLUMNS] for r in rows]
                               for s, rows in measured.items()})
                    for key, measured in recordings])


def dumps(document):
    """JSON text with every row (a list of numbers) on one line, for readable diffs."""
    return re.sub(r'\[\s+([^\[\]{}]*?)\s+\]', lambda m: '[' + re.sub(r',\s+', ', ', m.group(1))
                  + ']', json.dumps(document, indent=1)) + '\n'


def load(path):
    """A stored fingerprint, rows as dicts of :data:`COLUMNS`."""
    with open(path) as f:
        document = json.load(f)
    if document.get('columns') != list(COLUMNS) or not document.get('recordings'):
        raise FingerprintError('{}: not a fingerprint of this version (columns {}, expected '
                               '{})'.format(path, document.get('columns'), list(COLUMNS)))
    for recording in document['recordings']:
        recording['rows'] = {s: [dict(zip(COLUMNS, r)) for r in rows]
                             for s, rows in recording['rows'].items()}
    return document


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument('--check', metavar='PATH', help='compare with a stored fingerprint')
    action.add_argument('--write', metavar='PATH', help='record the fingerprint into PATH '
                        'afresh, one recording per cap of --caps')
    action.add_argument('--add', metavar='PATH', help='check, then add this CPU and cap\'s '
                        'trajectory to PATH (refused if PATH has one)')
    p.add_argument('--caps', default='default,AVX2',
                   help='--write: DNNL_MAX_CPU_ISA caps to record (the first is the reference '
                   'of the portable part; default: %(default)s)')
    p.add_argument('--tolerance', action='append', default=[], metavar='SEGMENT=REL',
                   help='--write: a segment\'s portable tolerance (default: the one in PATH)')
    p.add_argument('--change', action='append', default=[], metavar='FLAG=VALUE',
                   help='--check: run the command with this flag changed (negative '
                   'controls), e.g. --change=--lr=0.0045; FLAG= adds a flag without value')
    p.add_argument('--segments', default=','.join(SEGMENTS),
                   help='--check: segments to run (default: %(default)s)')
    args = p.parse_args(argv)
    args.segments = args.segments.split(',')
    unknown = sorted(set(args.segments) - set(SEGMENTS))
    if unknown:
        p.error('--segments: unknown {}; choose from {}'.format(
            ', '.join(unknown), ', '.join(SEGMENTS)))
    args.changes = {}
    for item in args.change:
        flag, _, value = item.partition('=')
        if not flag.startswith('--'):
            p.error('--change {!r}: expected FLAG=VALUE, e.g. --change=--lr=0.0045'.format(item))
        args.changes[flag] = value or None
    try:
        args.tolerances = {s: float(v) for s, _, v in
                           (t.partition('=') for t in args.tolerance)}
    except ValueError:
        p.error('--tolerance {}: expected SEGMENT=REL, e.g. fp16=0.02'.format(args.tolerance))
    return p, args


def _same_key(recording, key):
    return {k: recording[k] for k in key} == key


def _write(path, recordings, old, tolerances=None):
    """Write `recordings` with the tolerances of `old` (a stored fingerprint or None),
    updated by `tolerances`."""
    merged = {s: e['tolerance'] for s, e in old['segments'].items()} if old else {}
    merged.update(tolerances or {})
    with open(path, 'w') as f:
        f.write(dumps(record(recordings, merged, old['trajectory_tolerance'] if old else 0.0)))


def main(argv=None):
    """The command; exit status 0 (matches / recorded), 1 (moved / refused), 2 (usage, or
    a run that failed)."""
    p, args = _parse(argv)
    try:
        return _run(p, args)
    except FingerprintError as err:
        print('fingerprint: error: {}'.format(err), file=sys.stderr)
        return 2


def _run(p, args):
    if args.write:
        old = None
        if os.path.exists(args.write):  # its tolerances and machines; its rows may be stale
            with open(args.write) as f:
                old = json.load(f)
        missing = [s for s in SEGMENTS
                   if s not in args.tolerances and s not in (old or {}).get('segments', {})]
        if missing:
            p.error('no tolerance for {}: give --tolerance {}=REL'.format(
                ', '.join(missing), missing[0]))
        with tempfile.TemporaryDirectory(prefix='fingerprint_data_') as folder:
            root = _generated_data(folder)
            recordings = [(machine_key(cap), fingerprint(dataset_root=root, cap=cap))
                          for cap in args.caps.split(',')]
        _write(args.write, recordings, old, args.tolerances)
        print('wrote {}: {} recording(s) on {} (caps {})'.format(
            args.write, len(recordings), cpu_model(), args.caps))
        dropped = [r for r in (old or {}).get('recordings', [])
                   if not any(_same_key(r, key) for key, _ in recordings)]
        for r in dropped:
            print('dropped the recording of {} (cap {}): --add it again there'.format(
                r['cpu'], r['dnnl_max_cpu_isa']))
        return 0
    path = args.check or args.add
    stored, key = load(path), machine_key()
    if args.add and any(_same_key(r, key) for r in stored['recordings']):
        print('{} already holds a recording for {} (cap {}): --check compares with it; after '
              'an intended change, --write records afresh'.format(
                  path, key['cpu'], key['dnnl_max_cpu_isa']))
        return 1
    measured = fingerprint(args.segments if args.check else tuple(SEGMENTS), args.changes)
    report = compare(stored, measured, key)
    print(describe(report, stored))
    if _moved(report):
        if not args.changes:
            print('re-record with: python -m gluoncv_fp16.bench.fingerprint --write ' + path)
        return 1
    if args.add:
        kept = [({k: v for k, v in r.items() if k != 'rows'}, r['rows'])
                for r in stored['recordings']]
        _write(path, kept + [(key, measured)], stored)
        print('added the trajectory of {} (cap {}) to {}'.format(
            key['cpu'], key['dnnl_max_cpu_isa'], path))
    return 0


if __name__ == '__main__':
    sys.exit(main())
