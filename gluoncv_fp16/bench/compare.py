"""Does FP16 train as well as FP32 here? A multi-seed parity study of the precision modes.

One seed of a from-scratch detector proves little: two FP32 runs that differ only in
the seed differ in mAP by more than FP16 usually costs. So the same configuration is
trained in each precision mode over several seeds and every mode is compared with FP32
seed by seed. With the same seed both runs start from the same weights and see the same
batches, so the paired difference removes most of the seed-to-seed spread; the unpaired
(Welch) interval is given too, as the figure that does not rely on that pairing.

Runs are interleaved (seed 1 in every mode, then seed 2, ...): a machine that slows down
or is shared during the study then affects every mode alike, and an interrupted study
already has comparable seeds.

    python scripts/compare_precision.py --modes fp32,fp16,fp32-fp16:2 --seeds 1,2,3 \
        --out DIR -- <train_yolo3.py arguments without --seed/--save-prefix/--fp16/--amp>

A larger held-out evaluation: with ``--eval-root FOLDER`` (a VOC-layout folder with a
validation split, e.g. ``scripts/make_synthetic.py FOLDER --num-train 0 --num-val 1000
--seed 1``) each finished run's final checkpoint (``*_last.ckpt``) is evaluated on it once,
in FP32 (the comparison is of training, not of inference precision), by
``gluoncv-fp16-eval --dataset custom --bootstrap 200``: its mAP and the mAP's
sampling error over those images. The result is kept in the run folder
(``heldout_eval.json``, ``heldout_eval/``) and reused while the checkpoint, the folder
and the number of resamples stay the same, so an extended study evaluates only its new
runs. The verdict then reads the held-out paired difference.

Layout: ``DIR/<mode>/seed<k>/`` is the ``--save-prefix`` of one run (``fp32-fp16:2`` is
written ``fp32-fp16_2``), with the run's console output in ``run.out`` and its exit
status in ``run.json``; ``DIR/study.json`` holds the training arguments. The report is
``DIR/compare.md`` (also printed), ``DIR/compare.json`` and ``DIR/compare_map.png``.

Several processes may share ``DIR`` (one per core or GPU): a run being trained is locked
(:func:`claim_run`) and the others skip it. Each process writes the report of the runs
finished when it ends; the last to end writes the complete one (``--report-only``
rewrites it at any time).
"""
import argparse
import csv
import datetime
import fcntl
import glob
import json
import math
import os
import shlex
import subprocess
import sys
import time

from ..checkpoint.format import atomic_write
from ..data.map_bootstrap import describe_samples
from ..precision.policy import FULL_PRECISION, get_policy, policies, policy_names
from .machine import commit, cpu_model

__all__ = ['StudyError', 'parse_mode', 'parse_seeds', 'check_train_args', 'epochs_of',
           'describe', 'paired_difference', 'welch_difference', 'pairs_to_decide', 'verdict',
           'summarize_run', 'summarize', 'markdown', 'claim_run', 'run_study', 'collect_runs',
           'evaluate_held_out', 'held_out_difference_error', 'main']

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = os.path.join(ROOT, 'train_yolo3.py')
PROG = 'compare_precision.py'
REFERENCE = FULL_PRECISION
DEFAULT_EPOCHS = 200  # train_yolo3.py's --epochs default
# The study sets these per run; a second value in the passed arguments would silently
# win or lose depending on its position. (--resume: unfinished runs get --resume auto.)
FORBIDDEN = ('--seed', '--save-prefix', *(p.flag for p in policies() if p.flag),
             '--fp32-warmup-epochs', '--resume')
# A mode after an FP32 warm-up: 'fp32-fp16:N' is N FP32 epochs, then fp16.
_WARMED = {'{}-{}'.format(FULL_PRECISION, p.name): p for p in policies(lambda p: p.allows_fp32_warmup)}
HELDOUT_FILE = 'heldout_eval.json'
HELDOUT_RESAMPLES = 200
# The verdict's equivalence margin, in mAP: a difference smaller than this is one a user
# would not act on (one run's mAP on 1000 images already has an sd of about 0.01).
DEFAULT_MARGIN = 0.02
MODE_HELP = '{}, {} (N {} epochs, then the mode after the dash)'.format(
    ', '.join(policy_names()), ', '.join(w + ':N' for w in _WARMED), FULL_PRECISION)


class StudyError(ValueError):
    """A mistake in the study's arguments, found before any run starts."""


# ----------------------------------------------------------------------------- arguments

def parse_mode(name):
    """A mode name -> ``(canonical name, train_yolo3.py flags)``.

    Raises
    ------
    StudyError
        For a name that is not one of `MODE_HELP`.
    """
    name = name.strip()
    if name in policy_names():
        return name, get_policy(name).cli_args
    base, sep, epochs = name.partition(':')
    if base in _WARMED:
        if sep and epochs.isdigit() and int(epochs) >= 1:
            n = int(epochs)
            return '{}:{}'.format(base, n), _WARMED[base].cli_args + [
                '--fp32-warmup-epochs', str(n)]
        raise StudyError('mode {!r}: write {}:N with N >= 1, the FP32 epochs before '
                         '{}'.format(name, base, _WARMED[base].name))
    raise StudyError('unknown mode {!r}; valid modes: {}'.format(name, MODE_HELP))


def mode_folder(mode):
    """The folder name of a mode (no ':', which some file systems refuse)."""
    return mode.replace(':', '_')


def mode_of_folder(folder):
    """The mode a folder of a study holds, or None for any other folder."""
    try:
        mode = parse_mode(folder.replace('_', ':', 1))[0]
    except StudyError:
        return None
    return mode if mode_folder(mode) == folder else None


def parse_seeds(text):
    """``'1,2,3'`` -> ``[1, 2, 3]``; raises StudyError for a non-integer or repeated seed
    (a repeated seed would count one pair of runs twice)."""
    seeds = []
    for part in text.split(','):
        part = part.strip()
        try:
            seed = int(part)
        except ValueError:
            raise StudyError('--seeds {!r}: {!r} is not an integer; write e.g. 1,2,3'
                             .format(text, part)) from None
        if seed in seeds:
            raise StudyError('--seeds {!r}: seed {} is given twice; each seed is one pair '
                             'of runs'.format(text, seed))
        seeds.append(seed)
    return seeds


def _matches(token, flag):
    """Whether argparse would read `token` as `flag` (it accepts unique abbreviations; an
    ambiguous one is an error there, so refusing it here loses nothing)."""
    given = token.split('=', 1)[0]
    return given.startswith('--') and len(given) > 2 and flag.startswith(given)


def check_train_args(train_args):
    """Raise StudyError when the training arguments hold a flag the study sets per run."""
    for token in train_args:
        for flag in FORBIDDEN:
            if _matches(token, flag):
                raise StudyError('{!r} in the training arguments: the study sets {} itself '
                                 'for each run; remove it (modes: --modes, seeds: --seeds, '
                                 'folders: --out)'.format(token, flag))


def epochs_of(train_args):
    """The ``--epochs`` the runs train (the last one given, as argparse reads it)."""
    epochs = DEFAULT_EPOCHS
    for k, token in enumerate(train_args):
        given, sep, value = token.partition('=')
        if not (_matches(given, '--epochs') and len(given) >= 4):  # '--e' is ambiguous
            continue
        if not sep:
            value = train_args[k + 1] if k + 1 < len(train_args) else ''
        try:
            epochs = int(value)
        except ValueError:
            raise StudyError('--epochs {!r} in the training arguments: give a whole number'
                             .format(value)) from None
        if epochs < 1:
            raise StudyError('--epochs {} in the training arguments: at least 1'.format(epochs))
    return epochs


# ---------------------------------------------------------------------------- statistics

def _finite(values):
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def describe(values):
    """Mean, sample standard deviation (ddof=1) and count of the finite `values`.

    Returns
    -------
    dict
        ``{'mean', 'sd', 'n'}``; ``mean`` is NaN for n = 0 and ``sd`` for n < 2.
    """
    values = _finite(values)
    n = len(values)
    mean = sum(values) / n if n else math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n >= 2 else math.nan
    return {'mean': mean, 'sd': sd, 'n': n}


def _t_quantile(df):
    from scipy import stats
    return float(stats.t.ppf(0.975, df))


def paired_difference(values, reference):
    """``values - reference`` seed by seed, over the seeds finite in both.

    Parameters
    ----------
    values, reference : dict
        Seed -> a run's figure (e.g. final mAP) of the compared mode and of FP32.

    Returns
    -------
    dict
        ``{'mean', 'sd', 'n', 'seeds', 'ci'}``: ``ci`` is the 95% t-interval
        ``mean +- t(0.975, n-1) sd / sqrt(n)`` as ``[lo, hi]``, or None for n < 2 (one
        pair says nothing about the spread).
    """
    seeds = sorted(s for s in values
                   if s in reference and len(_finite([values[s], reference[s]])) == 2)
    out = describe([values[s] - reference[s] for s in seeds])
    out['seeds'] = seeds
    out['ci'] = None
    if out['n'] >= 2:
        half = _t_quantile(out['n'] - 1) * out['sd'] / math.sqrt(out['n'])
        out['ci'] = [out['mean'] - half, out['mean'] + half]
    return out


def welch_difference(values, reference):
    """Unpaired difference of the means with Welch's 95% interval.

    Parameters
    ----------
    values, reference : list of float
        The figures of the compared mode's runs and of FP32's (seeds need not match).

    Returns
    -------
    dict
        ``{'mean', 'df', 'ci'}``; ``ci`` (``[lo, hi]``) and ``df`` are None unless both
        sides have two or more runs.
    """
    a, b = describe(values), describe(reference)
    out = {'mean': a['mean'] - b['mean'], 'df': None, 'ci': None}
    if a['n'] < 2 or b['n'] < 2:
        return out
    va, vb = a['sd'] ** 2 / a['n'], b['sd'] ** 2 / b['n']
    se = math.sqrt(va + vb)
    if se == 0:  # both sides constant: the difference is exact
        out.update(df=float(a['n'] + b['n'] - 2), ci=[out['mean'], out['mean']])
        return out
    df = (va + vb) ** 2 / (va ** 2 / (a['n'] - 1) + vb ** 2 / (b['n'] - 1))
    half = _t_quantile(df) * se
    out.update(df=df, ci=[out['mean'] - half, out['mean'] + half])
    return out


def pairs_to_decide(diff, margin):
    """About how many pairs make the paired interval decide, at `diff`'s mean and sd.

    Two outcomes decide: an interval that excludes 0 (a difference), or one inside
    ``+-margin`` (equivalent within the margin). At the measured mean ``d`` and sd, the
    half width ``t(0.975, n-1) sd / sqrt(n)`` must fall below ``|d|`` for the first and
    below ``margin - |d|`` for the second; the returned n reaches the nearer one. An
    estimate from the runs so far, so fix the number of pairs with it before running them
    rather than stopping when an interval happens to exclude 0 (that would make the 95%
    interval an optimistic one). None without a spread (n < 2) or without a reachable
    target; at most 10 000.
    """
    if diff.get('ci') is None or not math.isfinite(diff['sd']):
        return None
    target = max(abs(diff['mean']), margin - abs(diff['mean']))
    if target <= 0:
        return None
    if diff['sd'] == 0:
        return 2
    for n in range(2, 10001):
        if _t_quantile(n - 1) * diff['sd'] / math.sqrt(n) <= target:
            return n
    return None


def verdict(mode, diff, margin=DEFAULT_MARGIN):
    """One line on the paired difference `diff` (:func:`paired_difference`) of `mode`.

    It decides when the 95% interval excludes 0 (``lower``/``higher``) or lies inside
    ``+-margin`` (``equivalent``); otherwise it says so and how many pairs would decide
    (:func:`pairs_to_decide`).
    """
    n = diff['n']
    if n == 0:
        return 'no seed finished in both {} and {}'.format(mode, REFERENCE)
    if diff['ci'] is None:
        return 'n={}: no interval (needs 2 or more seeds finished in both modes)'.format(n)
    lo, hi = diff['ci']
    interval = '(95% CI [{:+.4f}, {:+.4f}])'.format(lo, hi)
    if not lo <= 0 <= hi:
        return '{} {} by {:.4f} {}'.format(mode, 'lower' if diff['mean'] < 0 else 'higher',
                                           abs(diff['mean']), interval)
    if -margin <= lo and hi <= margin:
        return 'equivalent within +-{:.4f} at n={} {}'.format(margin, n, interval)
    need = pairs_to_decide(diff, margin)
    return 'not decided at n={} {}: it includes 0 and reaches beyond +-{:.4f}; {}'.format(
        n, interval, margin, 'about {} pairs would decide at this mean and sd'.format(need)
        if need else 'no number of pairs would decide at this spread')


def summarize_run(rows, epochs):
    """One run's figures from its ``_metrics.csv`` rows (dicts of strings or numbers).

    Returns
    -------
    dict
        ``finished`` (a row for the last epoch, ``epochs - 1``), ``final_map`` (the last
        validated epoch's mAP), ``best_map``, ``skipped_steps`` (total), ``loss_scale`` (the
        last row's), ``images_per_sec`` (mean of the rows) and ``curve`` (``[epoch, mAP]``
        pairs of the validated epochs).
    """
    by_epoch = {}
    for row in rows:  # a resumed run may repeat an epoch: its last row counts
        epoch = _number(row.get('epoch'))
        if math.isfinite(epoch):
            by_epoch[int(epoch)] = row
    ordered = [by_epoch[e] for e in sorted(by_epoch)]
    curve = [[e, _number(by_epoch[e].get('map'))] for e in sorted(by_epoch)]
    curve = [p for p in curve if math.isfinite(p[1])]
    maps = [m for _, m in curve]
    speeds = _finite(_number(r.get('images_per_sec')) for r in ordered)
    return {'finished': bool(by_epoch) and max(by_epoch) >= epochs - 1,
            'epochs_done': len(ordered),
            'final_map': maps[-1] if maps else math.nan,
            'best_map': max(maps) if maps else math.nan,
            'skipped_steps': sum(_finite(_number(r.get('skipped_steps')) for r in ordered)),
            'loss_scale': _number(ordered[-1].get('loss_scale')) if ordered else math.nan,
            'images_per_sec': sum(speeds) / len(speeds) if speeds else math.nan,
            'curve': curve}


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _median(values):
    values = sorted(_finite(values))
    if not values:
        return math.nan
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def summarize(runs, modes, margin=DEFAULT_MARGIN):
    """Per mode: the figures over its finished runs and, except for FP32, the difference
    to FP32 and the verdict.

    Parameters
    ----------
    runs : list of dict
        ``{'mode', 'seed', 'finished', ...}`` plus :func:`summarize_run`'s figures; runs
        that did not finish count as failed and enter no figure.
    modes : list of str
        The modes in table order.
    margin : float
        The verdict's equivalence margin in mAP (:func:`verdict`).

    Returns
    -------
    dict
        Mode -> ``{'finished', 'failed', 'final_map', 'best_map'`` (:func:`describe`),
        ``'skipped_steps'`` (mean per run), ``'loss_scale'`` (median of the final ones),
        ``'images_per_sec'`` (mean), and for other modes than FP32 ``'paired_final'``,
        ``'paired_best'`` (:func:`paired_difference`), ``'welch_final'``,
        ``'welch_best'`` (:func:`welch_difference`) and ``'verdict'`` (on the paired
        final mAP)``}``. Runs with a held-out evaluation (``run['heldout']``, see
        :func:`evaluate_held_out`) add ``'heldout_map'`` (:func:`describe` over seeds),
        ``'heldout_image_sd'`` (the mean over runs of the mAP's bootstrap sd over the
        held-out images) and, against FP32, ``'paired_heldout'`` and
        ``'heldout_difference_image_sd'`` (:func:`held_out_difference_error`); the
        verdict then reads ``'paired_heldout'``.
    """
    def per_seed(mode, key):
        return {r['seed']: r[key] for r in runs if r['mode'] == mode and r['finished']}

    table = {}
    for mode in modes:
        done = [r for r in runs if r['mode'] == mode and r['finished']]
        stats = {'finished': len(done),
                 'failed': sum(1 for r in runs if r['mode'] == mode and not r['finished']),
                 'final_map': describe(r['final_map'] for r in done),
                 'best_map': describe(r['best_map'] for r in done),
                 'skipped_steps': describe(r['skipped_steps'] for r in done)['mean'],
                 'loss_scale': _median(r['loss_scale'] for r in done),
                 'images_per_sec': describe(r['images_per_sec'] for r in done)['mean']}
        held = [r['heldout'] for r in done if r.get('heldout')]
        if held:
            stats['heldout_map'] = describe(h['map'] for h in held)
            stats['heldout_image_sd'] = describe(h['sd'] for h in held)['mean']
        if mode != REFERENCE:
            for key in ('final', 'best'):
                values = per_seed(mode, key + '_map')
                reference = per_seed(REFERENCE, key + '_map')
                stats['paired_' + key] = paired_difference(values, reference)
                stats['welch_' + key] = welch_difference(list(values.values()),
                                                         list(reference.values()))
            stats['verdict'] = verdict(mode, stats['paired_final'], margin)
            held_mode, held_ref = _held_out(runs, mode), _held_out(runs, REFERENCE)
            if held_mode and held_ref:
                stats['paired_heldout'] = paired_difference(
                    {k: h['map'] for k, h in held_mode.items()},
                    {k: h['map'] for k, h in held_ref.items()})
                stats['heldout_difference_image_sd'] = held_out_difference_error(
                    held_mode, held_ref)
                stats['verdict'] = '{} (held-out)'.format(
                    verdict(mode, stats['paired_heldout'], margin))
        table[mode] = stats
    return table


def _held_out(runs, mode):
    """Seed -> held-out evaluation of the finished runs of `mode` that have one."""
    return {r['seed']: r['heldout'] for r in runs
            if r['mode'] == mode and r['finished'] and r.get('heldout')}


def held_out_difference_error(values, reference):
    """The sampling error over the held-out images of the mean paired difference.

    Every run is evaluated on the same images with the same seeded resamples
    (:func:`gluoncv_fp16.data.map_bootstrap.resample_counts`), so resample b of one run
    and resample b of another hold the same images: per resample the mean over the
    paired seeds of (mode - FP32), and the sd of that over resamples. The seed-to-seed
    interval (:func:`paired_difference`) does not hold this error: every seed is
    measured on the same images.

    Parameters
    ----------
    values, reference : dict
        Seed -> ``{'samples', 'images', 'seed', ...}`` (``heldout_eval.json``) of the
        compared mode and of FP32.

    Returns
    -------
    float
        The sd; NaN when no seed is in both, or the resamples differ (other image
        counts, seeds or numbers of resamples).
    """
    seeds = sorted(set(values) & set(reference))
    held = [values[s] for s in seeds] + [reference[s] for s in seeds]
    if not seeds or len({(h['images'], h['seed'], len(h['samples'])) for h in held}) != 1:
        return math.nan
    columns = zip(*[[_number(b) - _number(a) for a, b in
                     zip(reference[s]['samples'], values[s]['samples'])] for s in seeds])
    return describe_samples([sum(c) / len(seeds) for c in columns])['sd']


# -------------------------------------------------------------------------------- report

def _mean_sd(d, digits=4):
    if d['n'] == 0:
        return '-'
    if d['n'] == 1:
        return '{:.{p}f}'.format(d['mean'], p=digits)
    return '{:.{p}f} ± {:.{p}f}'.format(d['mean'], d['sd'], p=digits)


def _interval(ci):
    return '-' if ci is None else '[{:+.4f}, {:+.4f}]'.format(*ci)


def _num(value, fmt):
    return '-' if value is None or not math.isfinite(value) else fmt.format(value)


def markdown(table, runs):
    """The report's table, and one line per run that did not finish."""
    lines = ['| mode | runs (failed) | final mAP | best mAP | final - fp32, paired '
             '(n: mean ± sd [95% CI]) | final - fp32, Welch 95% CI | skipped steps | '
             'final loss scale | img/s | verdict |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for mode, s in table.items():
        if mode == REFERENCE:
            diff, welch, said = 'reference', '', 'reference'
        else:
            p = s['paired_final']
            diff = '-' if p['n'] == 0 else 'n={}: {:+.4f}{} {}'.format(
                p['n'], p['mean'], '' if p['n'] < 2 else ' ± {:.4f}'.format(p['sd']),
                _interval(p['ci']))
            welch, said = _interval(s['welch_final']['ci']), s['verdict']
        lines.append('| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |'.format(
            mode, s['finished'] + s['failed'], s['failed'], _mean_sd(s['final_map']),
            _mean_sd(s['best_map']), diff, welch, _num(s['skipped_steps'], '{:.1f}'),
            _num(s['loss_scale'], '{:g}'), _num(s['images_per_sec'], '{:.1f}'), said))
    if any('heldout_map' in s for s in table.values()):
        lines += ['', '| mode | held-out final mAP | its sd over images (per run) | '
                  'held-out final - fp32, paired (n: mean ± sd [95% CI]) | '
                  'sd over images of that mean |', '|---|---|---|---|---|']
        for mode, s in table.items():
            if 'heldout_map' not in s:
                continue
            p = s.get('paired_heldout')
            diff = 'reference' if mode == REFERENCE else '-' if not p or p['n'] == 0 else \
                'n={}: {:+.4f}{} {}'.format(p['n'], p['mean'], '' if p['n'] < 2 else
                                            ' ± {:.4f}'.format(p['sd']), _interval(p['ci']))
            lines.append('| {} | {} | {} | {} | {} |'.format(
                mode, _mean_sd(s['heldout_map']), _num(s['heldout_image_sd'], '{:.4f}'), diff,
                _num(s.get('heldout_difference_image_sd'), '{:.4f}')))
    failed = [r for r in runs if not r['finished']]
    if failed:
        lines.append('')
        lines += ['- failed: {} seed {}: {}'.format(r['mode'], r['seed'], r['error'])
                  for r in failed]
    return '\n'.join(lines)


def _header(out, train_args, epochs, runs, margin):
    held = [r['heldout'] for r in runs if r.get('heldout')]
    if held:
        reads = ('The verdict reads the paired interval of the held-out final mAP (each '
                 "run's final checkpoint evaluated in FP32 on {} images of {}; its sd over "
                 'images: a bootstrap of {} resamples, the same for every run).'.format(
                     held[0]['images'], held[0]['eval_root'], held[0]['resamples']))
    else:
        reads = 'The verdict reads the paired interval of the final mAP.'
    reads += (' It decides when that interval excludes 0 (lower/higher) or lies inside '
              '+-{:.4f} (equivalent); otherwise it estimates the pairs that would decide: '
              'run that many, then read it once.'.format(margin))
    commits = sorted({r['commit'] for r in runs if r.get('commit')})
    cpus = sorted({r['cpu'] for r in runs if r.get('cpu')})
    return '\n'.join([
        '# Precision parity study: {}'.format(os.path.abspath(out)), '',
        '- training: `python train_yolo3.py {}`; epochs: {}; seeds: {}'.format(
            shlex.join(train_args), epochs,
            ', '.join(str(s) for s in sorted({r['seed'] for r in runs})) or '-'),
        '- code: {}; CPU: {}; report: {}'.format(
            ', '.join(commits) or 'unknown', ', '.join(cpus) or 'unknown',
            datetime.datetime.now().strftime('%Y-%m-%d %H:%M')),
        '- mAP: final = the last validated epoch, best = the highest; mean ± sample sd over '
        'the finished seeds. Paired: the difference to fp32 seed by seed (same seed: same '
        'initial weights and batches), with its 95% t-interval; Welch: the unpaired '
        '95% interval of the difference of the means. ' + reads + ' Skipped steps: per run, '
        'mean over seeds; final loss scale: median over seeds; img/s: mean over epochs and '
        'seeds.', '', ''])


def plot(table, runs, path):
    """mAP per epoch: per mode the mean over its finished seeds, a band of ±1 sd."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for mode in table:
        curves = [dict(map(tuple, r['curve'])) for r in runs
                  if r['mode'] == mode and r['finished']]
        epochs = sorted({e for c in curves for e in c})
        if not epochs:
            continue
        stats = [describe([c.get(e) for c in curves]) for e in epochs]
        mean = [s['mean'] for s in stats]
        sd = [s['sd'] if s['n'] >= 2 else 0.0 for s in stats]
        line, = ax.plot(epochs, mean, marker='o', markersize=3,
                        label='{} (n={})'.format(mode, len(curves)))
        ax.fill_between(epochs, [m - d for m, d in zip(mean, sd)],
                        [m + d for m, d in zip(mean, sd)], color=line.get_color(), alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_title('validation mAP per epoch: mean over seeds, band ±1 sd', fontsize=10)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel('epoch')
    ax.set_ylabel('mAP')
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def report(out, train_args, epochs, modes, eval_root=None, margin=DEFAULT_MARGIN):
    """Read every run in `out` (with `eval_root`: and its held-out evaluation,
    :func:`evaluate_held_out`), write ``compare.md/.json/_map.png``; returns
    ``(markdown text, the runs)``."""
    runs = collect_runs(out, epochs)
    if eval_root:
        evaluate_held_out(out, runs, eval_root)
    found = {r['mode'] for r in runs}
    order = list(modes) + sorted(found - set(modes))
    order = [REFERENCE] * (REFERENCE in order) + [m for m in order if m != REFERENCE]
    table = summarize(runs, order, margin)
    png = plot(table, runs, os.path.join(out, 'compare_map.png'))
    if png is None and os.path.isfile(os.path.join(out, 'compare_map.png')):
        os.remove(os.path.join(out, 'compare_map.png'))  # not to be read as this report's
    text = _header(out, train_args, epochs, runs, margin) + markdown(table, runs) + '\n'
    if png is None:
        text += '\nNo finished run: no mAP plot.\n'
    with atomic_write(os.path.join(out, 'compare.md'), 'w') as f:
        f.write(text)
    with atomic_write(os.path.join(out, 'compare.json'), 'w') as f:
        json.dump(_jsonable({'train_args': train_args, 'epochs': epochs, 'margin': margin,
                             'modes': table, 'runs': runs}), f, indent=1)
    return text, runs


# ---------------------------------------------------------------------------------- runs

def run_dir(out, mode, seed):
    """The folder (``--save-prefix`` without the trailing separator) of one run."""
    return os.path.join(out, mode_folder(mode), 'seed{}'.format(seed))


def _read_rows(folder):
    paths = glob.glob(os.path.join(glob.escape(folder), '*_metrics.csv'))
    if not paths:
        return []
    with open(max(paths, key=os.path.getmtime), newline='') as f:
        return list(csv.DictReader(f))


def read_run(out, mode, seed, epochs):
    """One run's figures (:func:`summarize_run`) and, when it did not finish, why."""
    folder = run_dir(out, mode, seed)
    run = {'mode': mode, 'seed': seed}
    run.update(summarize_run(_read_rows(folder), epochs))
    status = {}
    if os.path.isfile(os.path.join(folder, 'run.json')):
        with open(os.path.join(folder, 'run.json')) as f:
            status = json.load(f)
    run.update(commit=status.get('commit'), cpu=status.get('cpu'), error='')
    if not run['finished']:
        if status.get('error'):
            run['error'] = status['error']
        elif status.get('returncode'):
            run['error'] = 'exit {}'.format(status['returncode'])
        elif status.get('returncode') == 0:
            run['error'] = ('exited 0 after {} of {} epochs (--max-iters?)'
                            .format(run['epochs_done'], epochs))
        else:
            run['error'] = 'unfinished ({} of {} epochs; still running, or stopped)'.format(
                run['epochs_done'], epochs)
    return run


def collect_runs(out, epochs):
    """Every run folder of a study, whatever the modes and seeds asked for this time."""
    runs = []
    for folder in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        mode = mode_of_folder(folder)
        if mode is None or not os.path.isdir(os.path.join(out, folder)):
            continue
        seeds = []
        for name in os.listdir(os.path.join(out, folder)):
            if name.startswith('seed') and name[4:].lstrip('-').isdigit():
                seeds.append(int(name[4:]))
        runs += [read_run(out, mode, seed, epochs) for seed in sorted(seeds)]
    return runs


def _final_checkpoint(folder):
    paths = glob.glob(os.path.join(glob.escape(folder), '*_last.ckpt'))
    return max(paths, key=os.path.getmtime) if paths else None


def _checkpoint_key(path):
    info = os.stat(path)
    return {'checkpoint': os.path.basename(path), 'size': info.st_size,
            'mtime_ns': info.st_mtime_ns}


def run_held_out_eval(checkpoint, eval_root, folder, resamples):
    """``gluoncv-fp16-eval`` of `checkpoint` on `eval_root` in a child process (its
    output in ``folder/heldout_eval/``); its FP32 bootstrap dict, or raises
    RuntimeError with the command's last error line."""
    out_dir = os.path.join(folder, 'heldout_eval')
    cmd = [sys.executable, '-m', 'gluoncv_fp16.cli.eval', checkpoint, '--dataset', 'custom',
           '--dataset-root', eval_root, '--dtype', 'float32', '--bootstrap', str(resamples),
           '--out', out_dir, '--no-progress']
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, errors='replace')
    with open(os.path.join(folder, 'heldout_eval.out'), 'w') as log:
        log.write('$ {}\n{}{}'.format(shlex.join(cmd), done.stdout, done.stderr))
    if done.returncode:
        lines = done.stderr.strip().splitlines() or ['exit {}'.format(done.returncode)]
        raise RuntimeError(lines[-1])
    with open(os.path.join(out_dir, 'summary.json')) as f:
        return json.load(f)['results']['float32']['bootstrap']


def evaluate_held_out(out, runs, eval_root, resamples=HELDOUT_RESAMPLES,
                      evaluate=run_held_out_eval):
    """Give every finished run ``run['heldout']``: its final checkpoint's mAP on
    `eval_root` with the bootstrap over those images.

    A run folder's ``heldout_eval.json`` is reused when it was made from the same
    checkpoint (name, size, modification time), folder and number of resamples; else
    `evaluate` (``(checkpoint, eval_root, folder, resamples) -> bootstrap dict``) runs
    and the file is rewritten. A failed evaluation leaves ``run['heldout_error']``.
    """
    eval_root = os.path.abspath(eval_root)
    for run in runs:
        folder = run_dir(out, run['mode'], run['seed'])
        checkpoint = _final_checkpoint(folder) if run['finished'] else None
        if checkpoint is None:
            continue
        key = dict(_checkpoint_key(checkpoint), eval_root=eval_root, resamples=resamples)
        path = os.path.join(folder, HELDOUT_FILE)
        cached = None
        if os.path.isfile(path):
            with open(path) as f:
                cached = json.load(f)
            if any(cached.get(k) != v for k, v in key.items()):
                cached = None
        if cached is None:
            print('held-out evaluation: {} seed {} on {}'.format(run['mode'], run['seed'],
                                                                 eval_root), flush=True)
            try:
                found = evaluate(checkpoint, eval_root, folder, resamples)
            except RuntimeError as err:
                run['heldout_error'] = str(err)
                print('held-out evaluation of {} seed {} FAILED: {}'.format(
                    run['mode'], run['seed'], err), flush=True)
                continue
            cached = dict(found, **key)
            with atomic_write(path, 'w') as f:
                json.dump(_jsonable(cached), f, indent=1)
        run['heldout'] = {k: cached.get(k) for k in (
            'map', 'sd', 'ci95', 'samples', 'images', 'seed', 'resamples', 'eval_root')}
    return runs


def run_one(out, mode, seed, train_args, lock=None):
    """Train one run in a child process (AMP patches MXNet process-wide, and a crash must
    not end the study); its output is appended to ``run.out``. A run with a
    ``_last.ckpt`` is continued with ``--resume auto``. `lock`: the descriptor of
    :func:`claim_run`, inherited by the child so that the run stays locked while it lives.

    Returns
    -------
    tuple
        ``(return code, the last line it wrote to stderr)``.
    """
    folder = run_dir(out, mode, seed)
    os.makedirs(folder, exist_ok=True)
    cmd = [sys.executable, TRAIN_SCRIPT, *parse_mode(mode)[1], *train_args, '--seed', str(seed),
           '--save-prefix', folder + os.sep]
    if glob.glob(os.path.join(glob.escape(folder), '*_last.ckpt')):
        cmd += ['--resume', 'auto']
    last = ''
    with open(os.path.join(folder, 'run.out'), 'a') as log:
        log.write('$ {}\n'.format(shlex.join(cmd)))
        log.flush()
        # stdout straight to the file; stderr through here to keep its last line (the
        # one-line error of a refused run, or a traceback's last line). Both append.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True,
                                errors='replace', pass_fds=() if lock is None else (lock,))
        try:
            for line in proc.stderr:
                log.write(line)
                log.flush()
                last = line.strip() or last
            returncode = proc.wait()
        except KeyboardInterrupt:
            proc.wait()  # it got the signal too, and saves a resumable checkpoint
            raise
    with open(os.path.join(folder, 'run.json'), 'w') as f:
        json.dump({'returncode': returncode, 'error': last if returncode else '',
                   'command': cmd, 'commit': commit(), 'cpu': cpu_model()}, f, indent=1)
    return returncode, last


RUNNING = '.running'


def claim_run(out, mode, seed):
    """Lock a run for this process, so that several compare processes can share one
    ``--out`` (one per core or GPU, with overlapping ``--seeds``).

    The lock is an exclusive ``flock`` on ``.running`` in the run's folder. The kernel
    drops it when every process holding the descriptor has ended, so a crashed or killed
    study leaves nothing stale, and pid reuse cannot fake a holder. :func:`run_one` passes
    the descriptor to the training child: if only this process dies, the child still holds
    the run. Returns the open descriptor (close it to release), or None when the run is
    held elsewhere.
    """
    folder = run_dir(out, mode, seed)
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, RUNNING), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, '{}\n'.format(os.getpid()).encode())  # for a user who wonders who holds it
    return fd


def run_study(out, modes, seeds, train_args, epochs):
    """Every (seed, mode) run not finished yet and not being trained by another process,
    seed by seed, one at a time."""
    todo = [(seed, mode) for seed in seeds for mode in modes]
    for k, (seed, mode) in enumerate(todo, 1):
        where = '[{}/{}] {} seed {}'.format(k, len(todo), mode, seed)
        if read_run(out, mode, seed, epochs)['finished']:
            print('{}: finished before, kept'.format(where), flush=True)
            continue
        lock = claim_run(out, mode, seed)
        if lock is None:
            print('{}: being trained by another process, skipped'.format(where), flush=True)
            continue
        try:
            if read_run(out, mode, seed, epochs)['finished']:  # by the process that held it
                print('{}: finished by another process, kept'.format(where), flush=True)
                continue
            print('{}: training ({})'.format(where, run_dir(out, mode, seed)), flush=True)
            start = time.time()
            returncode, last = run_one(out, mode, seed, train_args, lock)
        finally:
            os.close(lock)
        run = read_run(out, mode, seed, epochs)
        if run['finished']:
            said = 'done in {:.0f} s, final mAP {:.4f}'.format(time.time() - start,
                                                              run['final_map'])
        else:
            said = 'FAILED (exit {}): {}'.format(returncode, run['error'] or last)
        print('{}: {}'.format(where, said), flush=True)


# ---------------------------------------------------------------------------------- main

def parse_args(argv):
    """Own options before ``--``, train_yolo3.py's after it (None when there is no ``--``)."""
    argv = list(argv)
    train = None
    if '--' in argv:
        cut = argv.index('--')
        argv, train = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(
        prog=PROG, description='Train one configuration in several precision modes over '
        'several seeds and compare each mode with FP32.',
        epilog='usage: {} --modes fp32,fp16 --seeds 1,2,3 --out DIR -- <train_yolo3.py '
               'arguments>'.format(PROG))
    p.add_argument('--modes', help='comma-separated: ' + MODE_HELP)
    p.add_argument('--seeds', help='comma-separated seeds, e.g. 1,2,3,4,5')
    p.add_argument('--out', required=True, help='the study folder (runs and report)')
    p.add_argument('--eval-root', metavar='FOLDER',
                   help="a VOC-layout folder with a validation split (e.g. scripts/"
                        "make_synthetic.py FOLDER --num-train 0 --num-val 1000 --seed 1): "
                        "each finished run's final checkpoint is evaluated on it once "
                        '(FP32, mAP with its bootstrap sd over the images; kept in the run '
                        'folder) and the verdict reads that held-out figure')
    p.add_argument('--margin', type=float, default=DEFAULT_MARGIN, metavar='MAP',
                   help='equivalence margin of the verdict in mAP (default %(default)s): a '
                        'paired 95%% interval inside +-MAP says "equivalent"')
    p.add_argument('--report-only', action='store_true',
                   help='run nothing: the report from the runs in --out')
    return p.parse_args(argv), train


def _study_args(out, train_args, report_only):
    """The training arguments of the study in `out`; a study is one configuration, so a
    continuation with other arguments is refused."""
    path = os.path.join(out, 'study.json')
    saved = None
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)['train_args']
    if train_args is None:
        if saved is None:
            raise StudyError('{} has no study.json: pass the training arguments after -- '
                             '(at least --epochs)'.format(out) if report_only else
                             'give the training arguments after --, e.g. -- --epochs 10 '
                             '--network mobilenet0.25')
        return saved
    if saved is not None and saved != train_args and not report_only:
        raise StudyError('{} holds a study of other training arguments ({}); continue it '
                         'with the same ones or choose another --out'
                         .format(out, shlex.join(saved)))
    return train_args


def main(argv=None):
    """The command; returns 0 when every run in the study finished, 1 when some did not,
    2 for a mistake in the arguments (one line on stderr, nothing run)."""
    args, train_args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.report_only:
            modes = [parse_mode(m)[0] for m in args.modes.split(',')] if args.modes else []
        else:
            if not args.modes or not args.seeds:
                raise StudyError('--modes and --seeds are needed to run a study '
                                 '(or --report-only)')
            modes = [parse_mode(m)[0] for m in args.modes.split(',')]
            if len(set(modes)) < len(modes):
                raise StudyError('--modes {!r}: a mode is given twice'.format(args.modes))
            seeds = parse_seeds(args.seeds)
        if train_args is not None:
            check_train_args(train_args)
        if args.eval_root and not os.path.isdir(os.path.join(args.eval_root, 'Annotations')):
            raise StudyError('--eval-root {}: not a VOC-layout folder (no Annotations/); '
                             'make one with scripts/make_synthetic.py {} --num-train 0 '
                             '--num-val 1000 --seed 1'.format(args.eval_root, args.eval_root))
        if not 0 < args.margin < 1:
            raise StudyError('--margin {}: an mAP difference between 0 and 1, e.g. '
                             '0.02'.format(args.margin))
        if args.report_only and not os.path.isdir(args.out):
            raise StudyError('--out {}: no such folder'.format(args.out))
        train_args = _study_args(args.out, train_args, args.report_only)
        epochs = epochs_of(train_args)
    except StudyError as err:
        print('{}: error: {}'.format(PROG, err), file=sys.stderr)
        return 2
    if not args.report_only:
        # atomic: a second compare process on the same --out reads it meanwhile
        with atomic_write(os.path.join(args.out, 'study.json'), 'w') as f:
            json.dump({'train_args': train_args}, f, indent=1)
        try:
            run_study(args.out, modes, seeds, train_args, epochs)
        except KeyboardInterrupt:
            print('{}: interrupted; the same command continues the study (finished runs '
                  'are kept, the interrupted one resumes)'.format(PROG), file=sys.stderr)
            return 130
    text, runs = report(args.out, train_args, epochs, modes, args.eval_root, args.margin)
    print('report: {} (.md, .json, _map.png)'.format(os.path.join(args.out, 'compare')))
    print(text, end='')
    return 0 if runs and all(r['finished'] for r in runs) else 1
