"""The training loop: one step function for every precision, periodic work in hooks.

The loop owns the run's state (network, trainer, loss scaler, epoch, iteration,
precision phase) and knows nothing about argparse, paths or printing. Hooks are called
``before_train / before_epoch / after_step / after_epoch / after_train``; a stateful
hook has ``state_dict`` and is saved in the checkpoint under its ``name``.
"""
import logging
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..precision.policy import get_policy, start_half_precision, switch_precision
from ..utils.trainer_io import load_trainer_state_bytes
from .nan_guard import NanGuard

__all__ = ['TrainLoop', 'HookBase', 'LOSS_NAMES']

logger = logging.getLogger(__name__)

LOSS_NAMES = ('obj_loss', 'center_loss', 'scale_loss', 'cls_loss')


class HookBase:
    """Periodic work around the loop. Override what you need."""
    name = None  # set to save state in checkpoints

    def before_train(self, loop):
        pass

    def before_epoch(self, loop):
        pass

    def after_step(self, loop, stats):
        pass

    def after_epoch(self, loop):
        pass

    def after_train(self, loop):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class TrainLoop:
    """Runs epochs of YOLOv3 training.

    Parameters
    ----------
    net : gluon.HybridBlock
        FP16-safe YOLOv3, initialised on `contexts`, in FP32 (the loop casts it).
    contexts : list of mx.Context
    loader : iterable with ``set_epoch(epoch)``
        Yields ``(image, gt_boxes, obj_t, centers_t, scales_t, weights_t, clas_t)``.
    make_trainer : callable(net, multi_precision) -> gluon.Trainer
    scaler : LossScaler or AmpLossScaler
    policy : PrecisionPolicy
    batch_size : int
        Images per step on this worker (the gradient normaliser before `grad_scale`).
    grad_scale : float
        Extra gradient normaliser, e.g. the number of workers summing gradients.
    fp32_warmup_epochs : int
        With an fp16 policy, epochs trained in FP32 first.
    nan_guard : NanGuard or None
    hooks : list of HookBase
    no_switch_reason : str or None
        Why precision may not change once a trainer exists (e.g. a dist kvstore, whose
        keys keep their dtype); None allows switching.
    all_healthy : callable(bool) -> bool, optional
        Combines this worker's "step was healthy" with the other workers' (see
        `WorkerSetup.all_healthy`), so that all of them roll back at the same step.
    """

    def __init__(self, net, contexts, loader, make_trainer, scaler, policy, batch_size,
                 grad_scale=1.0, fp32_warmup_epochs=0, nan_guard=None, hooks=(),
                 no_switch_reason=None, all_healthy=None):
        self.net = net
        self.contexts = list(contexts)
        self.loader = loader
        self.make_trainer = make_trainer
        self.scaler = scaler
        self.policy = policy
        self.batch_size = batch_size
        self.grad_scale = grad_scale
        self.fp32_warmup_epochs = fp32_warmup_epochs
        self.guard = nan_guard or NanGuard()
        self.hooks = list(hooks)
        self.no_switch_reason = no_switch_reason
        self.all_healthy = all_healthy
        self.epoch = 0
        self.iteration = 0
        self.phase = None  # no trainer yet: the first phase builds one directly
        self.stop_requested = False
        self.epoch_stats = {}
        self.params = list(net.collect_params().values())
        self.trainer = None

    # ----- precision phases -------------------------------------------------------------
    def scheduled_phase(self, epoch=None):
        """The phase the schedule asks for (ignoring a NaN-guard fallback)."""
        epoch = self.epoch if epoch is None else epoch
        if self.policy.name == 'fp16' and epoch < self.fp32_warmup_epochs:
            return 'fp32'
        return self.policy.name

    @staticmethod
    def _phase_policy(phase):
        """The precision policy a phase trains with (no phase yet: FP32)."""
        return get_policy(phase or 'fp32')

    def _phase_dtype(self, phase):
        return self._phase_policy(phase).compute_dtype

    def set_phase(self, phase):
        """Move to 'fp32' / 'fp16' / 'amp', keeping master weights and optimizer state."""
        if phase == self.phase:
            return
        if self.trainer is None:  # first phase of a fresh run: nothing to carry over
            if self._phase_dtype(phase) == 'float16':  # masters = the exact FP32 weights
                self._install_trainer(start_half_precision(self.net, self.make_trainer))
            else:
                self._phase_policy(phase).prepare_net(self.net)
                self._install_trainer(self._new_trainer(phase))
            self.net.hybridize()
        elif self._phase_dtype(phase) != self._phase_dtype(self.phase):
            if self.no_switch_reason:
                raise RuntimeError("cannot switch precision {} -> {} in this run: {}".format(
                    self.phase, phase, self.no_switch_reason))
            trainer = switch_precision(self.net, self.trainer, self.make_trainer,
                                       self._phase_dtype(phase))
            self._install_trainer(trainer)
            self.net.hybridize()
        logger.info('epoch %d iteration %d: precision phase %s -> %s', self.epoch,
                    self.iteration, self.phase or 'start', phase)
        self.phase = phase

    def _new_trainer(self, phase):
        """A trainer for the net as cast for `phase` (FP32 master weights when FP16)."""
        return self.make_trainer(self.net, self._phase_dtype(phase) == 'float16')

    def _install_trainer(self, trainer):
        self.trainer = trainer
        self.scaler.attach(trainer)

    @property
    def scaling_active(self):
        return self.phase not in ('fp32', None)

    # ----- one step ---------------------------------------------------------------------
    def cast_input(self, array):
        return self._phase_policy(self.phase).cast_input(array)

    def run_step(self, batch):
        """Forward, backward, update (or skip). Returns the mean losses as floats."""
        parts = [gluon.utils.split_and_load(arr, self.contexts, even_split=False)
                 for arr in batch]
        with autograd.record():
            per_device = [self.net(self.cast_input(x), gt, *targets)
                          for x, gt, *targets in zip(*parts)]
            totals = [mx.nd.add_n(*losses) for losses in per_device]
        scaler = self.scaler if self.scaling_active else _NO_SCALING
        scaler.backward(totals, self.trainer)
        self.trainer.allreduce_grads()
        applied = scaler.step(self.trainer, self.batch_size * self.grad_scale, self.params)
        scaler.update(applied, self.params)
        sums = [sum(float(losses[k].sum().asscalar()) for losses in per_device)
                for k in range(len(LOSS_NAMES))]
        stats = {name: value / self.batch_size for name, value in zip(LOSS_NAMES, sums)}
        stats['applied'] = applied
        stats['phase'] = self.phase
        return stats

    def _step_with_guard(self, batch):
        try:
            stats = self.run_step(batch)
            problem = self._problem(stats)
        except FloatingPointError as err:
            stats, problem = None, str(err)
        self.iteration += 1  # counted before the guard looks, so snapshots name done steps
        if self.all_healthy is not None and not self.all_healthy(problem is None):
            problem = problem or 'another worker reported an unhealthy step'
        if problem:
            self.guard.recover(self, problem)
            return None
        self.guard.after_good_step(self)
        return stats

    def _problem(self, stats):
        """Why this step cannot be kept (None when it can)."""
        losses = [stats[k] for k in LOSS_NAMES]
        if not np.all(np.isfinite(losses)):
            return 'non-finite loss {}'.format(dict(zip(LOSS_NAMES, np.round(losses, 4))))
        if self.scaling_active and self.scaler.collapsed:
            return 'loss scale collapsed to {:g}'.format(self.scaler.scale_value)
        return None

    def restore(self, snapshot):
        """Put the network, trainer and scaler back to `snapshot` (same process).

        The trainer is kept when the dtype is unchanged: a new one would initialise its
        kvstore keys again, which a dist kvstore refuses (they exist already).
        """
        dtype = self._phase_dtype(snapshot.phase)
        recast = dtype != self._phase_dtype(self.phase)
        if recast:
            self.net.cast(dtype)
        for name, param in self.net.collect_params().items():
            param.set_data(snapshot.params[name].astype(param.dtype))
        if recast:  # (a snapshot is taken from a loop that has a trainer)
            self._install_trainer(self._new_trainer(snapshot.phase))
        load_trainer_state_bytes(self.trainer, snapshot.trainer_states)
        self.scaler.load_state_dict(snapshot.scaler_state)
        self.phase = snapshot.phase
        self.net.hybridize()

    # ----- epochs -----------------------------------------------------------------------
    def train(self, start_epoch, end_epoch, max_iters=0):
        """Train epochs [start_epoch, end_epoch); stop early after `max_iters` iterations."""
        self.stop_requested = False
        try:
            self._call('before_train')
            for epoch in range(start_epoch, end_epoch):
                self.epoch = epoch
                self._run_epoch(max_iters)
                if self.stop_requested:
                    break
        finally:
            self._call('after_train')

    def _run_epoch(self, max_iters):
        if not self.guard.in_fallback:
            self.set_phase(self.scheduled_phase())
        self.loader.set_epoch(self.epoch)
        self.epoch_stats = {'images': 0, 'steps': 0, 'skipped': 0, 'start': time.time(),
                            **{k: 0.0 for k in LOSS_NAMES}}
        self._call('before_epoch')
        for batch in self.loader:
            stats = self._step_with_guard(batch)
            if stats is not None:
                self._accumulate(stats, batch[0].shape[0])
                self._call('after_step', stats)
            if max_iters and self.iteration >= max_iters:
                self.stop_requested = True
                break
        self.epoch_stats['time'] = time.time() - self.epoch_stats['start']
        self._call('after_epoch')

    def _accumulate(self, stats, images):
        epoch = self.epoch_stats
        epoch['images'] += images
        epoch['steps'] += 1
        epoch['skipped'] += 0 if stats['applied'] else 1
        for k in LOSS_NAMES:
            epoch[k] += stats[k]

    def _call(self, event, *args):
        for hook in self.hooks:
            getattr(hook, event)(self, *args)

    @property
    def learning_rate(self):
        return self.trainer.learning_rate

    # ----- state ------------------------------------------------------------------------
    def state_dict(self):
        """Plain-number state of the loop and its hooks (weights are saved separately)."""
        return {'epoch': self.epoch, 'iteration': self.iteration, 'phase': self.phase,
                'scaler': self.scaler.state_dict(), 'guard': self.guard.state_dict(),
                'hooks': {h.name: h.state_dict() for h in self.hooks if h.name}}

    def load_state_dict(self, state, trainer_states):
        """Restore :meth:`state_dict` output and the trainer's bytes (weights already
        loaded into the net in the checkpoint's phase dtype)."""
        self.phase = state['phase'] if state['phase'] in ('fp32', 'fp16', 'amp') else 'fp32'
        self._install_trainer(self._new_trainer(self.phase))
        if trainer_states:
            load_trainer_state_bytes(self.trainer, trainer_states)
        self.iteration = int(state['iteration'])
        self.epoch = int(state['epoch'])
        scaler_state = state.get('scaler') or {}
        if scaler_state.get('mode') == self.scaler.mode:
            self.scaler.load_state_dict(scaler_state)
        else:
            logger.info('checkpoint loss scaler (%s) differs from this run (%s); starting '
                        'a fresh one', scaler_state.get('mode'), self.scaler.mode)
        self.guard.load_state_dict(state.get('guard') or {'recoveries': 0, 'fallback_left': 0})
        hook_states = state.get('hooks', {})
        for hook in self.hooks:
            if hook.name and hook.name in hook_states:
                hook.load_state_dict(hook_states[hook.name])
        self.net.hybridize()


class _NoScaling:
    """The FP32 phase of an FP16 run: no loss scaling, no skipping."""

    @staticmethod
    def backward(losses, trainer=None):
        autograd.backward(losses)

    @staticmethod
    def step(trainer, batch_size, params):
        trainer.update(batch_size)
        return True

    @staticmethod
    def update(applied, params=None):
        pass


_NO_SCALING = _NoScaling()
