"""PNG plots of a run: losses, validation mAP, and the loss scale step by step.

They read the run's ``_steps.csv`` (one row per optimizer step) and ``_metrics.csv`` (one
row per epoch). Losses span orders of magnitude over a run, so they are drawn on a log
axis; the loss scale is drawn per step, so its back-off from 2^15 in the first steps is
visible, with the skipped steps marked.
"""
import csv
import math
import os

from .metrics import LOSS_NAMES

__all__ = ['plot_metrics']


def _rows(path):
    if not os.path.isfile(path):
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _column(rows, key):
    values = []
    for row in rows:
        try:
            values.append(float(row[key]))
        except (KeyError, TypeError, ValueError):
            values.append(math.nan)
    return values


def _points(xs, ys, positive=False):
    return [(x, y) for x, y in zip(xs, ys)
            if not math.isnan(y) and (y > 0 or not positive)]


def plot_metrics(prefix, title):
    """Write ``{prefix}_losses.png``, ``_map.png``, ``_loss_scale.png``; returns the paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    steps, epochs = _rows(prefix + '_steps.csv'), _rows(prefix + '_metrics.csv')
    if not steps and not epochs:
        raise ValueError('{}_steps.csv and _metrics.csv have no rows to plot'.format(prefix))
    it = _column(steps, 'iteration')
    written = []

    def save(fig, ax, name, subtitle, xlabel, ylabel):
        ax.set_title('{}: {}'.format(title, subtitle), fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = '{}_{}.png'.format(prefix, name)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in LOSS_NAMES:
        points = _points(it, _column(steps, key), positive=True)
        if points:
            ax.plot(*zip(*points), label=key, linewidth=0.8)
    ax.set_yscale('log')
    save(fig, ax, 'losses', 'training losses per step', 'iteration', 'loss per image (log)')

    fig, ax = plt.subplots(figsize=(7, 4))
    points = _points(_column(epochs, 'epoch'), _column(epochs, 'map'))
    if points:
        ax.plot(*zip(*points), marker='o', label='mAP')
    save(fig, ax, 'map', 'validation mAP', 'epoch', 'mAP')

    fig, ax = plt.subplots(figsize=(7, 4))
    scale = _points(it, _column(steps, 'loss_scale'), positive=True)
    if scale:
        ax.step(*zip(*scale), where='post', label='loss scale')
    skipped = [x for x, s in zip(it, _column(steps, 'skipped')) if s == 1]
    if skipped and scale:
        level = dict(scale)
        ax.plot(skipped, [level.get(x, 1.0) for x in skipped], 'rx', label='skipped step')
    ax.set_yscale('log', base=2)
    save(fig, ax, 'loss_scale', 'loss scale per step', 'iteration', 'loss scale (log2)')
    return written
