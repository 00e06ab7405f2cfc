"""Periodic work around the loop: progress, checkpoints, metrics files, plots, TensorBoard.

Every hook only reads the loop's metrics record (``loop.record``: the step and epoch
dicts passed to ``after_step`` / ``after_epoch``); none writes anything another reads.
"""
import csv
import logging
import math
import os

from .checkpoint import atomic_write, save_run_state, save_weights
from .loop import HookBase
from .metrics import EPOCH_FIELDS, LOSS_NAMES, STEP_FIELDS

__all__ = ['ProgressHook', 'CheckpointHook', 'CSVHook', 'PlotHook', 'TensorBoardHook',
           'MixupScheduleHook', 'csv_hooks', 'read_metrics']

logger = logging.getLogger(__name__)


class ProgressHook(HookBase):
    """A tqdm bar per epoch (on terminals) and a log line every `log_interval` steps."""

    def __init__(self, log_interval, total_steps=None, show_bar=True):
        self.log_interval = log_interval
        self.total_steps = total_steps
        self.show_bar = show_bar
        self._bar = None

    def before_train(self, loop):
        logger.info('effective batch %d images per update (%d per batch x %d accumulated x '
                    '%d workers)', loop.effective_batch, loop.batch_size, loop.accumulate,
                    loop.num_workers)

    def before_epoch(self, loop):
        if self.show_bar:
            from tqdm import tqdm
            self._bar = tqdm(total=self.total_steps, desc='epoch {}'.format(loop.epoch),
                             unit='it', leave=False, disable=None, dynamic_ncols=True)

    def after_step(self, loop, step):
        if self._bar is not None:
            self._bar.update(loop.accumulate)
            self._bar.set_postfix(
                {**{k.split('_')[0]: '{:.2f}'.format(step[k]) for k in LOSS_NAMES},
                 'lr': '{:.2e}'.format(step['lr']), 'scale': '{:g}'.format(step['loss_scale']),
                 'img/s': '{:.1f}'.format(step['images_per_sec'])}, refresh=False)
        if loop.record.steps % self.log_interval == 0:
            logger.info('[Epoch %d][Batch %d] %s, lr=%.3e, loss_scale=%g, phase=%s, %s'
                        '%.1f img/s', step['epoch'], loop.epoch_position - 1,
                        ', '.join('{}={:.3f}'.format(k, step[k]) for k in LOSS_NAMES),
                        step['lr'], step['loss_scale'], step['phase'],
                        '' if step['grad_norm'] is None
                        else 'grad_norm={:.3g}, '.format(step['grad_norm']),
                        step['images_per_sec'])

    def after_epoch(self, loop, epoch):
        self.after_train(loop)
        logger.info('[Epoch %d] %s, %d steps (%d skipped), %.1f img/s, %.1f s%s',
                    epoch['epoch'], ', '.join('{}={:.3f}'.format(k, epoch[k])
                                              for k in LOSS_NAMES),
                    epoch['steps'], epoch['skipped_steps'], epoch['images_per_sec'],
                    epoch['epoch_time'], _bad_sample_note(epoch))
        scores = [(k, v) for k, v in epoch.items() if k.startswith('AP/')]
        if not math.isnan(epoch.get('map', math.nan)):
            logger.info('[Epoch %d] validation: %s', epoch['epoch'], ', '.join(
                '{}={:.4f}'.format(k, v) for k, v in scores + [('mAP', epoch['map'])]))

    def after_train(self, loop):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _bad_sample_note(epoch):
    """', 3 bad samples so far (2 x truncated image, ...)' or '' when there are none."""
    count = epoch.get('bad_samples') or 0
    if not count:
        return ''
    return ', {} bad samples so far ({})'.format(count, epoch.get('bad_sample_kinds', ''))


class CheckpointHook(HookBase):
    """What a run leaves on disk, as GluonCV does plus what resume needs:

    * ``_last.ckpt`` every epoch: the full run state, for ``--resume auto``;
    * ``_best.ckpt`` and ``_best.params`` when mAP improves (``_best_map.log`` lists them);
    * ``_{epoch:04d}_{map:.4f}.params`` when ``epoch % save_interval == 0`` (GluonCV's rule);
    * with `every` > 0, ``_last.ckpt`` also every `every` iterations, mid-epoch (resumes
      exactly there).

    ``.params`` files hold FP32 weights under ``save_parameters`` names -- the EMA weights
    when the run keeps them, else the FP32 masters -- and load into stock GluonCV.
    """
    name = 'checkpoint'

    def __init__(self, prefix, save_interval, meta_fn, every=0):
        self.prefix = prefix
        self.save_interval = save_interval
        self.meta_fn = meta_fn
        self.every = every
        self.best_map = -1.0
        self.best_epoch = -1

    def before_train(self, loop):
        """Drop ``_best_map.log`` lines past the checkpoint a run resumes from (a run killed
        between writing that line and its checkpoint would list the epoch twice)."""
        path = self.prefix + '_best_map.log'
        if not os.path.isfile(path):
            return
        with open(path) as f:
            lines = f.readlines()
        keep = [l for l in lines if loop.iteration and l.split(':')[0].strip().isdigit()
                and int(l.split(':')[0]) <= loop.epoch]
        if keep != lines:
            with atomic_write(path, 'w') as f:
                f.writelines(keep)

    def after_step(self, loop, step):
        if self.every and loop.iteration // self.every > \
                (loop.iteration - loop.accumulate) // self.every:
            self.save(loop, self.prefix + '_last.ckpt')

    def save(self, loop, path, state=None):
        """Write the run state (`state`, or the loop's now) as a checkpoint at `path`."""
        return save_run_state(path, state or loop.capture(copy=False), self.meta_fn())

    @staticmethod
    def deploy_weights(loop):
        return loop.deploy_weights()

    def after_epoch(self, loop, epoch):
        current = epoch.get('map', math.nan)
        if not math.isnan(current) and current > self.best_map:
            self.best_map, self.best_epoch = current, loop.epoch
            self.save(loop, self.prefix + '_best.ckpt')
            save_weights(self.prefix + '_best.params', self.deploy_weights(loop))
            with open(self.prefix + '_best_map.log', 'a') as f:
                f.write('{:04d}:\t{:.4f}\n'.format(loop.epoch, current))
        if loop.epoch % self.save_interval == 0:
            save_weights('{}_{:04d}_{:.4f}.params'.format(
                self.prefix, loop.epoch, 0.0 if math.isnan(current) else current),
                self.deploy_weights(loop))
        self.save(loop, self.prefix + '_last.ckpt')

    def after_train(self, loop):
        if self.best_epoch >= 0:
            logger.info('done: best mAP %.4f at epoch %d; weights %s_best.params, resumable '
                        'state %s_last.ckpt, metrics %s_metrics.csv', self.best_map,
                        self.best_epoch, self.prefix, self.prefix, self.prefix)

    def state_dict(self):
        return {'best_map': self.best_map, 'best_epoch': self.best_epoch}

    def load_state_dict(self, state):
        self.best_map = float(state.get('best_map', -1.0))
        self.best_epoch = int(state.get('best_epoch', -1))


class CSVHook(HookBase):
    """Rows of the record, one per step (``per='step'``) or per epoch.

    `fields` are the columns known in advance, in their order; a scalar a hook adds
    appends its column (the file is rewritten once with the wider header), so no value is
    dropped. Rows are appended as they come; a resumed run first drops the rows past its
    checkpoint, so a restart never duplicates one.
    """

    def __init__(self, path, fields, per='epoch'):
        self.path = path
        self.fields = tuple(fields)
        self.per = per
        self._file = None
        self._columns = list(self.fields)

    def before_train(self, loop):
        rows, header = [], []
        if os.path.isfile(self.path):
            with open(self.path, newline='') as f:
                reader = csv.DictReader(f)
                rows, header = list(reader), list(reader.fieldnames or [])
        key, last = ('epoch', loop.epoch) if self.per == 'epoch' else \
            ('iteration', loop.iteration)
        if self.per == 'epoch' and not loop.epoch_done:
            last -= 1  # a mid-epoch checkpoint: its epoch has no row yet
        keep = [r for r in rows if float(r[key]) <= last] if loop.iteration else []
        self._columns = list(self.fields)
        if keep:  # the columns the kept rows have, known ones first
            self._columns += [c for c in header if c not in self._columns]
        self._rewrite(keep)

    def _rewrite(self, rows):
        """Write `rows` under the current columns and reopen the file for appending."""
        self.after_train(None)
        with atomic_write(self.path, 'w') as f:
            writer = csv.DictWriter(f, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(rows)
        # Open from before_train until after_train, across hook calls: no `with` can hold it.
        self._file = open(self.path, 'a', newline='', buffering=1)  # noqa: SIM115
        self._writer = csv.DictWriter(self._file, fieldnames=self._columns)

    def _write(self, row):
        new = [k for k in row if k not in self._columns]
        if new:  # a scalar no row had: widen the header once, keep every value
            self._file.close()
            self._file = None
            old = read_metrics(self.path)
            self._columns += new
            self._rewrite(old)
        self._writer.writerow(row)

    def after_step(self, loop, step):
        if self.per == 'step':
            self._write(step)

    def after_epoch(self, loop, epoch):
        if self.per == 'epoch':
            self._write(epoch)
        self._file.flush()

    def after_train(self, loop):
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


class PlotHook(HookBase):
    """PNG plots of losses, mAP and loss scale at the end of training."""

    def __init__(self, prefix, title):
        self.prefix = prefix
        self.title = title

    def after_train(self, loop):
        from .plots import plot_metrics
        try:
            written = plot_metrics(self.prefix, self.title)
            logger.info('plots: %s', ', '.join(written))
        except (OSError, ValueError) as err:
            logger.warning('could not draw plots: %s', err)


class TensorBoardHook(HookBase):
    """TensorBoard event files under ``{prefix}_tensorboard/`` (tensorboardX, no
    TensorFlow): every finite number of each step's record under ``train/`` (losses, lr,
    loss scale, skipped steps, grad norm, img/s, what hooks add); per epoch, mAP and
    per-class AP under ``val/`` and what hooks add under ``epoch/``. A resumed run purges
    events past its checkpoint."""

    def __init__(self, logdir):
        self.logdir = logdir
        self._writer = None

    def before_train(self, loop):
        from tensorboardX import SummaryWriter
        self._writer = SummaryWriter(self.logdir, purge_step=loop.iteration or None)

    def after_step(self, loop, step):
        for key, value in step.items():
            if key not in ('iteration', 'epoch') and _finite_number(value):
                self._writer.add_scalar('train/' + key, value, step['iteration'])

    def after_epoch(self, loop, epoch):
        for key, value in epoch.items():
            if not _finite_number(value):
                continue
            if key == 'map' or key.startswith('AP/'):
                self._writer.add_scalar('val/' + key, value, loop.iteration)
            elif key not in _LOOP_EPOCH_KEYS:  # the step means are under train/ already
                self._writer.add_scalar('epoch/' + key, value, loop.iteration)
        self._writer.flush()

    def after_train(self, loop):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


_LOOP_EPOCH_KEYS = frozenset(EPOCH_FIELDS) | {'steps', 'images'}


def _finite_number(value):
    """A number TensorBoard can plot (not a phase name; a skipped step's norm is inf/NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


class MixupScheduleHook(HookBase):
    """Turn mixup off for the last `no_mixup_epochs` epochs (GluonCV's --no-mixup-epochs)."""

    def __init__(self, loader, epochs, no_mixup_epochs):
        self.loader = loader
        self.off_from = epochs - no_mixup_epochs

    def before_epoch(self, loop):
        self.loader.set_mixup(loop.epoch < self.off_from)


def csv_hooks(prefix):
    """The per-epoch ``_metrics.csv`` and per-step ``_steps.csv`` writers."""
    return [CSVHook(prefix + '_metrics.csv', EPOCH_FIELDS, 'epoch'),
            CSVHook(prefix + '_steps.csv', STEP_FIELDS, 'step')]

