"""The run's metrics record, as detectron2's EventStorage: written once, read by writers.

The loop writes each step's scalars (:meth:`MetricsRecord.put_step`) and each epoch's
(:meth:`MetricsRecord.put_epoch`) exactly once; hooks add their own numbers to the next
row with :meth:`MetricsRecord.put_scalar` (e.g. validation mAP at the epoch's end).
Progress bar, log, CSV files, plots and TensorBoard only read the record, so no writer
depends on another's order, and a new scalar reaches all of them without a field list
(`STEP_FIELDS` / `EPOCH_FIELDS` only fix the order of the columns known in advance).
"""
import math

__all__ = ['LOSS_NAMES', 'STEP_FIELDS', 'EPOCH_FIELDS', 'MetricsRecord']

LOSS_NAMES = ('obj_loss', 'center_loss', 'scale_loss', 'cls_loss')

STEP_FIELDS = ('iteration', 'epoch', 'phase', *LOSS_NAMES, 'lr', 'loss_scale', 'skipped',
               'grad_norm', 'images_per_sec')
EPOCH_FIELDS = ('epoch', 'phase', 'lr', 'loss_scale', 'skipped_steps', *LOSS_NAMES, 'map',
                'grad_norm', 'images_per_sec', 'epoch_time', 'recoveries', 'bad_samples')


class MetricsRecord:
    """Latest step, the running epoch, and finished epochs' rows.

    Attributes
    ----------
    step : dict
        The last step's scalars (`STEP_FIELDS`).
    epoch : dict
        The last finished epoch's scalars (`EPOCH_FIELDS` plus per-class AP as
        ``'AP/<class>'``, what the sources add, e.g. ``'bad_sample_kinds'``, and what
        hooks put).
    """

    def __init__(self):
        self.step = {}
        self.epoch = {}
        self._sums = {}
        self._counts = {}
        self.images = 0
        self.steps = 0
        self.skipped = 0
        self._sources = []
        self._pending = {}

    def add_source(self, source):
        """`source()` -> dict of scalars added to every epoch's row: counts kept by
        others, read when the epoch ends (e.g. the datasets' bad samples, which data
        workers find and the loader merges)."""
        self._sources.append(source)

    def put_scalar(self, name, value):
        """Add `name` to the next row written: this step's when called while a step is
        recorded (``after_update``), the epoch's when called at its end (``end_of_epoch``).
        """
        self._pending[name] = value

    def scalar(self, name, default=None):
        """A value put for the next row (e.g. mAP, for a hook that acts on it)."""
        return self._pending.get(name, default)

    def _take_pending(self):
        pending, self._pending = self._pending, {}
        return pending

    def start_epoch(self):
        self._sums = {k: 0.0 for k in (*LOSS_NAMES, 'grad_norm')}
        self._counts = dict.fromkeys(self._sums, 0)
        self.images = self.steps = self.skipped = 0

    def put_step(self, scalars, images):
        """One optimizer step (applied or skipped) over `images` images."""
        self.step = dict(scalars, **self._take_pending())
        self.images += images
        self.steps += 1
        self.skipped += 0 if scalars['skipped'] == 0 else 1
        for key in self._sums:
            value = scalars.get(key)
            if value is not None and math.isfinite(value):
                self._sums[key] += value
                self._counts[key] += 1

    def state_dict(self):
        """The running epoch's sums (a mid-epoch checkpoint continues them)."""
        return {'sums': dict(self._sums), 'counts': dict(self._counts), 'images': self.images,
                'steps': self.steps, 'skipped': self.skipped}

    def load_state_dict(self, state):
        self._sums = {k: float(v) for k, v in state['sums'].items()}
        self._counts = {k: int(v) for k, v in state['counts'].items()}
        self.images, self.steps = int(state['images']), int(state['steps'])
        self.skipped = int(state['skipped'])

    def running_mean(self, key):
        return self._sums[key] / self._counts[key] if self._counts.get(key) else math.nan

    def put_epoch(self, scalars):
        """The finished epoch: step means plus `scalars` (time, mAP, ...)."""
        row = {k: self.running_mean(k) for k in self._sums}
        row.update(skipped_steps=self.skipped, steps=self.steps, images=self.images)
        for source in self._sources:
            row.update(source())
        row.update(scalars)
        row.update(self._take_pending())
        self.epoch = row
        return row
