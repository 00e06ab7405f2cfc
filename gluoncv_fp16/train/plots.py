"""PNG plots of a run's ``metrics.csv``: losses, mAP, loss scale and skipped steps."""
import csv
import math

__all__ = ['plot_metrics']

_LOSSES = ('obj_loss', 'center_loss', 'scale_loss', 'cls_loss')


def _column(rows, key):
    values = []
    for row in rows:
        try:
            values.append(float(row[key]))
        except (KeyError, TypeError, ValueError):
            values.append(math.nan)
    return values


def plot_metrics(csv_path, prefix):
    """Write ``{prefix}_losses.png``, ``_map.png``, ``_loss_scale.png``; returns the paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    with open(csv_path, newline='') as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError('{} has no rows to plot'.format(csv_path))
    epochs = _column(rows, 'epoch')
    panels = [
        ('losses', [(k, _column(rows, k)) for k in _LOSSES], 'loss per image', False),
        ('map', [('mAP', _column(rows, 'map'))], 'validation mAP', False),
        ('loss_scale', [('loss scale', _column(rows, 'loss_scale')),
                        ('skipped steps', _column(rows, 'skipped_steps'))], 'value', True),
    ]
    written = []
    for name, series, ylabel, log_scale in panels:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, values in series:
            points = [(e, v) for e, v in zip(epochs, values) if not math.isnan(v)]
            if points:
                ax.plot(*zip(*points), marker='o', label=label)
        if log_scale:
            ax.set_yscale('symlog')
        ax.set_xlabel('epoch')
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
        path = '{}_{}.png'.format(prefix, name)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
