"""Periodic work around the loop: progress, validation, checkpoints, metrics, plots."""
import csv
import logging
import math
import os
import time

from .checkpoint import save_checkpoint
from .evaluation import evaluate
from .loop import LOSS_NAMES, HookBase

__all__ = ['ProgressHook', 'EvalHook', 'CheckpointHook', 'MetricsCSVHook', 'PlotHook',
           'MixupScheduleHook', 'CSV_FIELDS']

logger = logging.getLogger(__name__)

CSV_FIELDS = ('epoch', 'phase', 'lr', 'loss_scale', 'skipped_steps', *LOSS_NAMES, 'map',
              'images_per_sec', 'epoch_time', 'recoveries')


class ProgressHook(HookBase):
    """A tqdm bar per epoch (on terminals) and a log line every `log_interval` steps."""

    def __init__(self, log_interval, total_steps=None, show_bar=True):
        self.log_interval = log_interval
        self.total_steps = total_steps
        self.show_bar = show_bar
        self._bar = None
        self._tick = None

    def before_epoch(self, loop):
        self._tick = time.time()
        if self.show_bar:
            from tqdm import tqdm
            self._bar = tqdm(total=self.total_steps, desc='epoch {}'.format(loop.epoch),
                             unit='it', leave=False, disable=None, dynamic_ncols=True)

    def after_step(self, loop, stats):
        epoch = loop.epoch_stats
        elapsed = max(time.time() - epoch['start'], 1e-9)
        speed = epoch['images'] / elapsed
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(
                {**{k.split('_')[0]: '{:.2f}'.format(stats[k]) for k in LOSS_NAMES},
                 'lr': '{:.2e}'.format(loop.learning_rate),
                 'scale': '{:g}'.format(loop.scaler.scale_value if loop.scaling_active else 1),
                 'img/s': '{:.1f}'.format(speed)}, refresh=False)
        if epoch['steps'] % self.log_interval == 0:
            logger.info('[Epoch %d][Batch %d] %s, lr=%.3e, loss_scale=%g, phase=%s, '
                        '%.1f img/s', loop.epoch, epoch['steps'] - 1,
                        ', '.join('{}={:.3f}'.format(k, stats[k]) for k in LOSS_NAMES),
                        loop.learning_rate,
                        loop.scaler.scale_value if loop.scaling_active else 1.0,
                        loop.phase, speed)

    def after_epoch(self, loop):
        self.after_train(loop)
        epoch = loop.epoch_stats
        steps = max(epoch['steps'], 1)
        logger.info('[Epoch %d] %s, %d steps (%d skipped), %.1f img/s, %.1f s', loop.epoch,
                    ', '.join('{}={:.3f}'.format(k, epoch[k] / steps) for k in LOSS_NAMES),
                    epoch['steps'], epoch['skipped'],
                    epoch['images'] / max(epoch['time'], 1e-9), epoch['time'])

    def after_train(self, loop):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EvalHook(HookBase):
    """Validate every `interval` epochs (and after the last one); stores mAP in epoch_stats."""

    def __init__(self, val_loader, metric, interval, last_epoch):
        self.val_loader = val_loader
        self.metric = metric
        self.interval = interval
        self.last_epoch = last_epoch

    def after_epoch(self, loop):
        due = (loop.epoch + 1) % self.interval == 0 or loop.epoch + 1 >= self.last_epoch \
            or loop.stop_requested
        if not due:
            loop.epoch_stats['map'] = float('nan')
            return
        names, values = evaluate(loop.net, self.val_loader, loop.contexts, self.metric,
                                 loop.cast_input)
        names, values = _as_list(names), _as_list(values)
        logger.info('[Epoch %d] validation: %s', loop.epoch,
                    ', '.join('{}={:.4f}'.format(n, float(v)) for n, v in zip(names, values)))
        loop.epoch_stats['map'] = float(values[-1])


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


class CheckpointHook(HookBase):
    """Full-state checkpoints: ``_last.ckpt`` every epoch (for ``--resume auto``), periodic
    ``_{epoch:04d}_{map:.4f}.ckpt``, and ``_best.ckpt`` plus a GluonCV ``_best.params``."""
    name = 'checkpoint'

    def __init__(self, prefix, save_interval, meta_fn):
        self.prefix = prefix
        self.save_interval = save_interval
        self.meta_fn = meta_fn
        self.best_map = -1.0

    def save(self, loop, path):
        meta = dict(self.meta_fn(), **loop.state_dict())
        return save_checkpoint(path, loop.net, meta, trainer=loop.trainer)

    def after_epoch(self, loop):
        current = loop.epoch_stats.get('map', float('nan'))
        if not math.isnan(current) and current > self.best_map:
            self.best_map = current
            self.save(loop, self.prefix + '_best.ckpt')
            loop.net.save_parameters(self.prefix + '_best.params')
            with open(self.prefix + '_best_map.log', 'a') as f:
                f.write('{:04d}:\t{:.4f}\n'.format(loop.epoch, current))
        if (loop.epoch + 1) % self.save_interval == 0:
            self.save(loop, '{}_{:04d}_{:.4f}.ckpt'.format(
                self.prefix, loop.epoch, 0.0 if math.isnan(current) else current))
        self.save(loop, self.prefix + '_last.ckpt')

    def state_dict(self):
        return {'best_map': self.best_map}

    def load_state_dict(self, state):
        self.best_map = float(state.get('best_map', -1.0))


class MetricsCSVHook(HookBase):
    """One row per epoch in ``metrics.csv``; rows past a resumed epoch are dropped."""

    def __init__(self, path):
        self.path = path

    def before_train(self, loop):
        rows = read_metrics(self.path) if os.path.isfile(self.path) else []
        # A resumed loop holds the last completed epoch; its rows and earlier ones stay.
        keep = [r for r in rows if int(r['epoch']) <= loop.epoch] if loop.iteration else []
        with open(self.path, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(keep)

    def after_epoch(self, loop):
        epoch = loop.epoch_stats
        steps = max(epoch['steps'], 1)
        row = {'epoch': loop.epoch, 'phase': loop.phase, 'lr': loop.learning_rate,
               'loss_scale': loop.scaler.scale_value if loop.scaling_active else 1.0,
               'skipped_steps': epoch['skipped'],
               **{k: epoch[k] / steps for k in LOSS_NAMES},
               'map': epoch.get('map', float('nan')),
               'images_per_sec': epoch['images'] / max(epoch['time'], 1e-9),
               'epoch_time': epoch['time'], 'recoveries': loop.guard.recoveries}
        with open(self.path, 'a', newline='') as f:
            csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow(row)


def read_metrics(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


class PlotHook(HookBase):
    """PNG plots of losses, mAP and loss scale from ``metrics.csv`` at the end."""

    def __init__(self, csv_path, prefix):
        self.csv_path = csv_path
        self.prefix = prefix

    def after_train(self, loop):
        from .plots import plot_metrics
        try:
            written = plot_metrics(self.csv_path, self.prefix)
            logger.info('plots: %s', ', '.join(written))
        except (OSError, ValueError) as err:
            logger.warning('could not draw plots: %s', err)


class MixupScheduleHook(HookBase):
    """Turn mixup off for the last `no_mixup_epochs` epochs (GluonCV's --no-mixup-epochs)."""

    def __init__(self, loader, epochs, no_mixup_epochs):
        self.loader = loader
        self.off_from = epochs - no_mixup_epochs

    def before_epoch(self, loop):
        self.loader.set_mixup(loop.epoch < self.off_from)
