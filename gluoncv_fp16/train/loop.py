"""The training loop: one step function for every precision, periodic work in hooks.

The loop owns the run's live objects (network, trainer, loss scaler, NaN guard, counters,
precision phase) and knows nothing about argparse, paths or printing. Every feature around
the steps -- evaluation, EMA, checkpoints, writers, early stopping -- is a hook
(`HookBase`) that owns its state; the run state (:mod:`.state`) is composed from the
parts' own state dicts. Hooks add numbers to the metrics record the loop writes
(``loop.record.put_scalar``), and ask to stop with ``loop.request_stop(reason)``, which
the workers' per-step vote turns into a stop of every worker after the same step.

One blocking host read per optimizer step: the losses, the all-finite flag and the
gradient norm are packed into one small device array and read once, after the next batch
has been handed to the devices. It is this step's values, not the previous step's: the
loss scaler must know before the update whether to skip it, and MXNet 1.9 has no SGD
kernel that can skip on a device-side flag (see docs/training.md, "Host reads").
"""
import contextlib
import logging
import math
import signal
import time

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..data import device_batch
from ..model_zoo.params import named_params
from ..mxnet_compat import trainer_grad_multiplier
from ..precision.loss_scaler import LossScaler, finite_flag
from ..precision.optimizer_state import capture_optimizer, install_optimizer, master_arrays
from ..precision.policy import FULL_PRECISION, get_policy
from .metrics import LOSS_NAMES, MetricsRecord
from .nan_guard import NanGuard

__all__ = ['TrainLoop', 'HookBase', 'LOSS_NAMES', 'StopRequested']

logger = logging.getLogger(__name__)

_CHUNK = 128  # multi-array operators take a bounded number of arrays per call


class HookBase:
    """Periodic work around the loop, and the features built on it. Override what you need.

    A hook with a `name` is stateful: its ``state_dict()`` goes into the run state
    (NDArray values are stored as arrays, everything else as JSON) and comes back through
    ``load_state_dict`` on resume and on a NaN-guard rollback.

    Events, in order: ``before_train``; per epoch ``before_epoch``, per step
    ``after_update`` (the step is kept; before the NaN guard may snapshot it) and
    ``after_step`` (the step's record is written), then ``end_of_epoch`` (add scalars to
    the epoch's row with ``loop.record.put_scalar``) and ``after_epoch`` (the row is
    written); ``after_train``. A hook may call ``loop.request_stop(reason)``.
    """
    name = None

    def before_train(self, loop):
        pass

    def before_epoch(self, loop):
        pass

    def after_update(self, loop, applied):
        pass

    def after_step(self, loop, step):
        pass

    def end_of_epoch(self, loop):
        pass

    def after_epoch(self, loop, epoch):
        pass

    def after_train(self, loop):
        pass

    def weights_for_evaluation(self, loop):
        """{structural name: FP32 NDArray} to evaluate and deploy instead of the live
        weights (e.g. EMA weights), or None."""
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def check_resume(self, state):
        """Why this run cannot continue from a checkpoint holding `state` (this hook's
        saved state; None when the checkpoint has none), or None when it can. Asked
        before anything is restored; the answer completes "<file> ...", one line."""
        return None


class LoopOptions:
    """The loop's settings besides its components.

    Parameters
    ----------
    batch_size : int
        Images per batch on this worker (the gradient normaliser before the workers').
    accumulate : int
        Batches per optimizer update (gradient accumulation).
    clip_grad : float
        Clip the global L2 norm of the unscaled gradients to this value (0: off).
    fp32_warmup_epochs : int
        Epochs trained in FP32 first, with a policy that allows it (``allows_fp32_warmup``).
    nan_guard : NanGuard or None
    workers : WorkerSetup-like or None
        How this process trains with others: ``num_workers``, ``grad_scale`` (extra
        gradient normaliser, e.g. the number of workers summing gradients),
        ``no_switch_reason`` (why precision may not change once a trainer exists, or
        None), ``vote(healthy, stop) -> (bool, str or None)`` (combines this worker's
        "step was healthy" and stop wish with the others', so that all of them roll back,
        or stop, at the same step) and ``wait_for_all()``. None: one process alone.
    """

    def __init__(self, batch_size, accumulate=1, clip_grad=0.0, fp32_warmup_epochs=0,
                 nan_guard=None, workers=None):
        if int(accumulate) < 1:
            raise ValueError("accumulate must be >= 1, got {!r}".format(accumulate))
        if not clip_grad >= 0:
            raise ValueError("clip_grad must be >= 0, got {!r}".format(clip_grad))
        self.batch_size = batch_size
        self.accumulate = int(accumulate)
        self.clip_grad = float(clip_grad)
        self.fp32_warmup_epochs = fp32_warmup_epochs
        self.nan_guard = nan_guard
        self.workers = workers or SingleProcess()


class SingleProcess:
    """The `LoopOptions.workers` of a process training alone."""
    rank = 0
    num_workers = 1
    grad_scale = 1.0
    no_switch_reason = None

    @staticmethod
    def vote(healthy, stop=None):
        return healthy, stop

    def wait_for_all(self):
        pass


class StopRequested(Exception):
    """Training stopped at a step boundary because `stop_signal` was set (SIGTERM/SIGINT).

    Its text is the one line a user sees; `exit_code` is the shell's code for the signal.
    """

    def __init__(self, signal_name, epoch, iteration):
        super().__init__('stopped by {} at epoch {}, iteration {}; continue with --resume '
                         'auto'.format(signal_name, epoch, iteration))
        self.signal_name = signal_name
        self.exit_code = 128 + int(getattr(signal, signal_name))
        self.epoch = epoch
        self.iteration = iteration


class StepResult:
    """What one optimizer step reports to the loop (host values)."""

    def __init__(self, losses, applied, grad_norm, problem, phase, loss_scale):
        self.losses = losses
        self.applied = applied
        self.grad_norm = grad_norm
        self.problem = problem
        self.phase = phase              # the phase the step ran in
        self.loss_scale = loss_scale    # the scale after the step's update


class TrainLoop:
    """Runs epochs of YOLOv3 training.

    Parameters
    ----------
    net : gluon.HybridBlock
        FP16-safe YOLOv3, initialised on `contexts`, in FP32 (the loop casts it).
    contexts : list of mx.Context
    loader : iterable with ``set_epoch(epoch)``
        Yields packed batches (`data.device_batch`) or dense ones, ``(image, gt_boxes,
        obj_t, centers_t, scales_t, weights_t, clas_t)``.
    make_trainer : callable(net, multi_precision) -> gluon.Trainer
    scaler : LossScaler or AmpLossScaler
    policy : PrecisionPolicy
    hooks : list of HookBase
        Everything around the steps: evaluation, EMA, checkpoints, writers, stopping.
    options : LoopOptions or int
        Batch size, accumulation, clipping, FP32 warm-up, NaN guard, workers; an int is
        the batch size with every other option at its default.
    """

    def __init__(self, net, contexts, loader, make_trainer, scaler, policy, hooks=(),
                 options=1):
        options = options if isinstance(options, LoopOptions) else LoopOptions(options)
        self.net = net
        self.contexts = list(contexts)
        self.loader = loader
        self.make_trainer = make_trainer
        self.scaler = scaler
        self._off_scaler = LossScaler('none')  # FP32 phases: no scaling, no skipping
        self.policy = policy
        self.hooks = list(hooks)
        self.options = options
        self.guard = options.nan_guard or NanGuard()
        self.workers = options.workers
        self.epoch = 0
        self.iteration = 0        # batches consumed since the start of the run
        self.epoch_position = 0   # batches consumed in the current epoch
        self.epoch_done = False   # the current epoch finished (its checkpoint is an epoch end)
        self.resume_position = 0  # batches of `epoch` to skip: a mid-epoch resume
        self.phase = None         # no trainer yet: the first phase builds one
        self.stop_requested = False  # training ends after this step / epoch (no error)
        self.stop_reason = None
        self.signal_received = None  # set by `receive_signal` (:mod:`.stopping`)
        self.stop_signal = None      # the step's vote on it: stop after this step
        self._requested = None       # a hook's `request_stop` reason, not yet voted
        self.record = MetricsRecord()
        self.trainer = None
        self._packed_nets = {}  # (layout, dtype) -> device_batch.PackedNet
        self._untrained_fp32 = {}  # FP32 values of untrained FP16 parameters (install_phase)
        self.param_names = named_params(net)
        self.param_ids = {id(p): n for n, p in self.param_names.items()}
        self.trained = [p for p in self.param_names.values() if p.grad_req != 'null']
        if self.accumulate > 1:  # gradients add up over the window, zeroed after it
            for param in self.trained:
                param.grad_req = 'add'

    # the options, read where the loop uses them
    batch_size = property(lambda self: self.options.batch_size)
    accumulate = property(lambda self: self.options.accumulate)
    clip_grad = property(lambda self: self.options.clip_grad)
    fp32_warmup_epochs = property(lambda self: self.options.fp32_warmup_epochs)
    num_workers = property(lambda self: self.workers.num_workers)
    grad_scale = property(lambda self: self.workers.grad_scale)
    no_switch_reason = property(lambda self: self.workers.no_switch_reason)

    # ----- stopping -----------------------------------------------------------------------
    def request_stop(self, reason):
        """Ask to end training without an error. The request goes through the workers'
        vote, like a signal, so every worker stops after the same step: made during a
        step (``after_update`` / ``after_step``), it is voted at the next step, which
        is the last; made at an epoch's end (``end_of_epoch`` / ``after_epoch``), it is
        voted there and that epoch is the last."""
        if self._requested is None:
            logger.info('iteration %d: stop requested: %s', self.iteration, reason)
            self._requested = reason

    def receive_signal(self, name):
        """A stop signal arrived (SIGTERM/SIGINT): stop after this step with
        `StopRequested`. Returns False when one had arrived already."""
        if self.signal_received:
            return False
        self.signal_received = name
        return True

    def _vote(self, healthy):
        """(healthy, stop) of this step over every worker; sets `stop_signal` and, for a
        hook's request, `stop_requested` and `stop_reason`."""
        from_hook = 'request' if self._requested is not None else None
        healthy, stop = self.workers.vote(healthy, self.signal_received or from_hook)
        if stop == 'request':
            self.stop_requested = True
            self.stop_reason = self._requested or 'stop requested by another worker'
            self.stop_signal = None
        else:
            self.stop_signal = stop
        return healthy

    # ----- weights and precision phases ---------------------------------------------------
    def fp32_weights(self):
        """{structural name: FP32 NDArray} on the first device: the masters of FP16
        parameters (the loop's own FP32 copy for those no optimizer updates), the
        parameters themselves otherwise (live arrays, not copies)."""
        masters = master_arrays(self.trainer, self.param_ids) if self.trainer else {}
        ctx = self.contexts[0]
        weights = {}
        for name, param in self.param_names.items():
            if name in masters:
                weights[name] = masters[name]
            elif name in self._untrained_fp32:
                weights[name] = self._untrained_fp32[name]
            else:
                data = param.data(ctx)
                weights[name] = data if data.dtype == np.float32 else data.astype('float32')
        return weights

    def scheduled_phase(self, epoch=None):
        """The phase the schedule asks for (ignoring a NaN-guard fallback)."""
        epoch = self.epoch if epoch is None else epoch
        return self.policy.phase_at(epoch, self.fp32_warmup_epochs)

    @staticmethod
    def _policy_of(phase):
        """The policy of a phase name; FP32 before the first phase is installed (the
        network is built in FP32)."""
        return get_policy(phase or FULL_PRECISION)

    @classmethod
    def _dtype(cls, phase):
        return cls._policy_of(phase).compute_dtype

    def set_phase(self, phase):
        """Move to the phase named `phase` (a registered precision mode), keeping FP32
        weights and optimizer state."""
        if phase == self.phase:
            return
        if self.trainer is not None and self._dtype(phase) == self._dtype(self.phase):
            self.phase = phase
            return
        optimizer = capture_optimizer(self.trainer, self.param_ids, copy=False) \
            if self.trainer is not None else None
        logger.info('epoch %d iteration %d: precision phase %s -> %s', self.epoch,
                    self.iteration, self.phase or 'start', phase)
        self.install_phase(phase, self.fp32_weights(), optimizer)

    def install_phase(self, phase, weights, optimizer=None):
        """Cast the network to `phase`'s dtype, set `weights` (FP32, by structural name)
        and give the trainer `optimizer` state (None: fresh). FP16 parameters get their
        FP32 master from `weights`, exactly."""
        dtype = self._dtype(phase)
        recast = self.trainer is None or dtype != self._dtype(self.phase)
        if recast and self.trainer is not None and self.no_switch_reason:
            raise RuntimeError("cannot switch precision {} -> {} in this run: {}".format(
                self.phase, phase, self.no_switch_reason))
        if np.dtype(next(iter(self.param_names.values())).dtype) != np.dtype(dtype) or recast:
            self.net.cast(dtype)
        for name, param in self.param_names.items():
            value = weights[name]
            param.set_data(value if value.dtype == np.dtype(param.dtype)
                           else value.astype(param.dtype))
        # A half-precision parameter the optimizer does not update (grad_req 'null', e.g.
        # frozen) has no FP32 master in the trainer: the loop keeps its FP32 value.
        self._untrained_fp32 = {
            name: weights[name].copyto(self.contexts[0])
            for name, param in self.param_names.items()
            if param.grad_req == 'null' and np.dtype(param.dtype) != np.float32}
        if recast:
            self.trainer = self.make_trainer(self.net, self._policy_of(phase).multi_precision)
            self.scaler.attach(self.trainer)
        install_optimizer(self.trainer, self.param_ids, weights, optimizer)
        self.net.hybridize()
        self._packed_nets = {}
        self.phase = phase

    @property
    def scaling_active(self):
        return self._policy_of(self.phase).needs_loss_scaling

    @property
    def active_scaler(self):
        return self.scaler if self.scaling_active else self._off_scaler

    @property
    def learning_rate(self):
        return self.trainer.learning_rate

    @property
    def effective_batch(self):
        """Images per optimizer update over all workers."""
        return self.batch_size * self.accumulate * self.num_workers

    # ----- one step -----------------------------------------------------------------------
    def cast_input(self, array):
        return self._policy_of(self.phase).cast_input(array)

    def to_devices(self, batch):
        """Split a host batch over the devices (enqueued copies). A packed loader batch
        stays packed there (`data.device_batch.PackedParts`): the step's graph unpacks
        it (:meth:`forward`); a dense batch is only split."""
        return device_batch.to_devices(batch, self.contexts, expand=False)

    def forward(self, parts):
        """The losses of each device's part (under ``autograd.record``)."""
        if not isinstance(parts, device_batch.PackedParts):
            return [self.net(self.cast_input(x), gt, *targets)
                    for x, gt, *targets in zip(*parts)]
        return [self._packed_net(targets.shape, parts.info)(x, gt, targets)
                for x, gt, targets in zip(*parts)]

    def _packed_net(self, shape, info):
        """The net with the unpacking in its graph, one per layout and phase (dropped
        when a phase change casts and hybridizes the net again)."""
        key = (int(shape[0]), int(shape[1]) - 1, info, self._dtype(self.phase))
        block = self._packed_nets.get(key)
        if block is None:
            block = self._packed_nets[key] = device_batch.PackedNet(self.net, *key)
            block.hybridize()
        return block

    def run_step(self, window, before_read=None):
        """Forward and backward of each batch in `window` (device parts from
        :meth:`to_devices`), then one update or skip. `before_read` runs after all device
        work is enqueued and before the step's one blocking read (the loop hands the next
        batch to the devices there). Returns a `StepResult`."""
        scaler = self.active_scaler
        ctx = self.contexts[0]
        loss_sums = []
        for parts in window:
            with autograd.record():
                per_device = self.forward(parts)
                totals = [mx.nd.add_n(*losses) for losses in per_device]
            scaler.backward(totals, self.trainer)
            loss_sums.extend(mx.nd.concat(*[l.sum() for l in losses], dim=0).as_in_context(ctx)
                             for losses in per_device)
        self.trainer.allreduce_grads()
        report = self._report(loss_sums)
        if before_read is not None:
            before_read()
        values = report.asnumpy()  # the step's one blocking read
        images = sum(x.shape[0] for parts in window for x in parts[0])
        losses = dict(zip(LOSS_NAMES, (values[:4] / max(images, 1)).tolist()))
        finite = bool(values[4] == 1.0)
        normaliser = self.batch_size * len(window) * self.grad_scale
        grad_norm = self._unscaled_norm(values, normaliser, scaler)
        problem = self._problem(losses, finite)
        if problem:
            self._zero_grads()
            return StepResult(losses, False, grad_norm, problem, self.phase, scaler.scale_value)
        factor = 1.0
        if self.clip_grad and grad_norm is not None and grad_norm > self.clip_grad:
            factor = self.clip_grad / grad_norm
        applied = scaler.step(self.trainer, normaliser, finite, grad_factor=factor)
        # named by the run's iteration after this step, as steps.csv names it
        scaler.update(applied, self.trained, iteration=self.iteration + len(window))
        self._zero_grads()
        if self.scaling_active and self.scaler.collapsed:
            problem = 'loss scale collapsed to {:g}'.format(self.scaler.scale_value)
        return StepResult(losses, applied, grad_norm, problem, self.phase, scaler.scale_value)

    def _report(self, loss_sums):
        """Loss sums, all-finite flag and (when clipping) squared gradient norm, packed."""
        parts = [mx.nd.add_n(*loss_sums) if len(loss_sums) > 1 else loss_sums[0],
                 finite_flag(self.trained)]
        if self.clip_grad:
            parts.append(self._grad_square_sum())
        return mx.nd.concat(*parts, dim=0)

    def _grad_square_sum(self):
        """Sum of squared gradients (first device, accumulated in FP32: FP16 squares of
        loss-scaled gradients overflow)."""
        ctx = self.contexts[0]
        grads = [p.grad(ctx) for p in self.trained]
        grads = [g if g.dtype == np.float32 else g.astype('float32') for g in grads]
        sums = [mx.nd.multi_sum_sq(*grads[i:i + _CHUNK], num_arrays=len(grads[i:i + _CHUNK]))
                for i in range(0, len(grads), _CHUNK)]
        return mx.nd.sum(mx.nd.concat(*sums, dim=0), keepdims=True).reshape((1,))

    def _unscaled_norm(self, values, normaliser, scaler):
        """Global L2 norm of the gradient the optimizer applies (per image, unscaled)."""
        if len(values) < 6:
            return None
        # gluon.Trainer's own multiplier: Horovod and AMP change it
        multiplier = trainer_grad_multiplier(self.trainer) / normaliser
        multiplier /= scaler.unscale_divisor
        return math.sqrt(max(float(values[5]), 0.0)) * multiplier

    def _zero_grads(self):
        if self.accumulate == 1:
            return  # the next backward overwrites them
        for ctx in self.contexts:
            grads = [p.grad(ctx) for p in self.trained]
            for i in range(0, len(grads), _CHUNK):
                chunk = grads[i:i + _CHUNK]
                mx.nd.reset_arrays(*chunk, num_arrays=len(chunk))

    def _problem(self, losses, finite):
        """Why this step cannot be kept (None when it can)."""
        if not all(math.isfinite(v) for v in losses.values()):
            return 'non-finite loss {}'.format({k: round(v, 4) for k, v in losses.items()})
        if not finite and not self.scaling_active:
            return 'non-finite gradient in {} (no loss scaling to skip it)'.format(
                self.phase)
        return None

    def _step_with_guard(self, window, before_read):
        try:
            result = self.run_step(window, before_read)
            problem = result.problem
        except FloatingPointError as err:
            result, problem = None, str(err)
        self.iteration += len(window)
        self.epoch_position += len(window)
        if not self._vote(problem is None):
            problem = problem or 'another worker reported an unhealthy step'
        if problem:
            self.guard.recover(self, problem)
            return None
        self._call('after_update', result.applied)
        self.guard.after_good_step(self, len(window))
        return result

    # ----- state --------------------------------------------------------------------------
    def progress_state(self):
        """The loop's own part of the run state: where it is, and the running epoch."""
        return {'epoch': self.epoch, 'iteration': self.iteration,
                'epoch_position': self.epoch_position, 'epoch_done': self.epoch_done,
                'record': self.record.state_dict(), 'phase': self.phase}

    def load_progress_state(self, state):
        """Continue from :meth:`progress_state` output (the phase is installed apart)."""
        self.epoch = int(state['epoch'])
        self.iteration = int(state['iteration'])
        self.epoch_done = bool(state.get('epoch_done', True))
        self.epoch_position = int(state.get('epoch_position', 0))
        self.resume_position = 0 if self.epoch_done else self.epoch_position
        if not self.epoch_done:
            self.record.load_state_dict(state['record'])

    def capture(self, copy=True):
        """The run state (see :mod:`.state`)."""
        from .state import capture
        return capture(self, copy=copy)

    def restore(self, state, rollback=False):
        """Put `state` back (resume, or a NaN-guard rollback with `rollback`)."""
        from .state import restore
        restore(self, state, rollback=rollback)

    def _hook_weights(self):
        return next((w for w in (h.weights_for_evaluation(self) for h in self.hooks)
                     if w is not None), None)

    def deploy_weights(self):
        """FP32 weights to evaluate and deploy: a hook's (e.g. EMA), else the live ones."""
        weights = self._hook_weights()
        return self.fp32_weights() if weights is None else weights

    @contextlib.contextmanager
    def evaluation_weights(self):
        """A hook's evaluation weights (e.g. EMA) in the network for the duration."""
        weights = self._hook_weights()
        if weights is None:
            yield
            return
        saved = {n: [d.copy() for d in p.list_data()] for n, p in self.param_names.items()}
        for name, param in self.param_names.items():
            value = weights[name]
            param.set_data(value if value.dtype == np.dtype(param.dtype)
                           else value.astype(param.dtype))
        try:
            yield
        finally:
            for name, param in self.param_names.items():
                for data, copy in zip(param.list_data(), saved[name]):
                    copy.copyto(data)

    # ----- epochs -------------------------------------------------------------------------
    def train(self, start_epoch, end_epoch, max_iters=0):
        """Train epochs [start_epoch, end_epoch); stop early after `max_iters` iterations."""
        self.stop_requested, self.stop_reason, self._requested = False, None, None
        if self.trainer is None:
            self.set_phase(self.scheduled_phase(start_epoch))
        try:
            self._call('before_train')  # before the guard's first snapshot: hooks start
            self.guard.start(self)
            for epoch in range(start_epoch, end_epoch):
                self.epoch = epoch
                self._run_epoch(max_iters)
                if self.stop_requested:
                    break
            if self.stop_reason:
                logger.info('training stopped after epoch %d, iteration %d: %s', self.epoch,
                            self.iteration, self.stop_reason)
        finally:
            self._call('after_train')

    def _next_parts(self, batches):
        batch = next(batches, None)
        return None if batch is None else self.to_devices(batch)

    def _run_epoch(self, max_iters):
        if not self.guard.in_fallback:
            self.set_phase(self.scheduled_phase())
        self.loader.set_epoch(self.epoch)
        self.epoch_done = False
        self.epoch_position, self.resume_position = self.resume_position, 0
        if self.epoch_position:  # a mid-epoch resume: the record's sums came with the state
            self.loader.set_start(self.epoch_position)
        else:
            self.record.start_epoch()
        start = time.time()
        self._call('before_epoch')
        batches = iter(self.loader)
        pending = self._next_parts(batches)
        while pending is not None:
            window = [pending]
            while len(window) < self.accumulate:
                parts = self._next_parts(batches)
                if parts is None:
                    break
                window.append(parts)
            ahead = []
            result = self._step_with_guard(
                window, lambda ahead=ahead: ahead.append(self._next_parts(batches)))
            pending = ahead[0] if ahead else self._next_parts(batches)
            if result is not None:
                self._record_step(result, window, start)
            if self.stop_signal:
                raise StopRequested(self.stop_signal, self.epoch, self.iteration)
            if max_iters and self.iteration >= max_iters:
                self.stop_requested = True
            if self.stop_requested:
                break
        self._finish_epoch(time.time() - start)

    def _record_step(self, result, window, start):
        images = sum(x.shape[0] for parts in window for x in parts[0])
        elapsed = max(time.time() - start, 1e-9)
        self.record.put_step(dict(
            iteration=self.iteration, epoch=self.epoch, phase=result.phase, **result.losses,
            lr=self.learning_rate, loss_scale=result.loss_scale,
            skipped=0 if result.applied else 1, grad_norm=result.grad_norm,
            images_per_sec=(self.record.images + images) / elapsed), images)
        self._call('after_step', self.record.step)

    def _finish_epoch(self, seconds):
        self._call('end_of_epoch')  # hooks add scalars (e.g. validation mAP) to the row
        epoch = self.record.put_epoch(dict(
            epoch=self.epoch, phase=self.phase, lr=self.learning_rate,
            loss_scale=self.active_scaler.scale_value, epoch_time=seconds,
            images_per_sec=self.record.images / max(seconds, 1e-9),
            recoveries=self.guard.recoveries))
        self.epoch_done = True
        self._call('after_epoch', epoch)
        # A hook's stop request made at the epoch end is voted here, so every worker ends
        # after this epoch (a signal pending here is voted again at the next step).
        if self.workers.num_workers > 1 or self._requested is not None:
            self._vote(True)
            self.stop_signal = None
        # Every epoch end is a checkpoint point, so every resume point is a snapshot point;
        # taken after the hooks so that it equals what the checkpoint holds.
        self.guard.at_checkpoint(self)

    def _call(self, event, *args):
        for hook in self.hooks:
            getattr(hook, event)(self, *args)
