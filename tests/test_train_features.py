"""EMA, gradient accumulation, gradient clipping, rollback of the whole run state, and what
hooks may do: add scalars to the record, request a stop."""
import inspect
import math

import mxnet as mx
import numpy as np
import pytest

from helpers import (MODEL, SHAPE_CLASSES as CLASSES, ListLoader, make_batches, make_loop,
                     make_net, yolo_training_batch)
from gluoncv_fp16.model_zoo import get_model
from gluoncv_fp16.precision.loss_scaler import LossScaler
from gluoncv_fp16.train.ema import ModelEMA
from gluoncv_fp16.train.hooks import TensorBoardHook, csv_hooks, read_metrics
from gluoncv_fp16.train.loop import HookBase, TrainLoop
from gluoncv_fp16.train.metrics import EPOCH_FIELDS
from gluoncv_fp16.train.nan_guard import NanGuard
from gluoncv_fp16.train.patience import PatienceHook


@pytest.fixture(scope='module')
def batches():
    return make_batches(count=4, seed=10)


def numpy_weights(loop):
    return {k: v.asnumpy().copy() for k, v in loop.fp32_weights().items()}


def two_device_net():
    net = make_net()
    net.collect_params().reset_ctx([mx.cpu(0), mx.cpu(1)])
    return net


def initial_weights():
    """The FP32 weights every `make_loop` starts from (make_net's fixed seed)."""
    return {n: p.data().asnumpy().copy()
            for n, p in make_net()._collect_params_with_prefix().items()}


class WeightsAfterStep(HookBase):
    """FP32 weights after every recorded step, with whether the step was applied."""

    def __init__(self):
        self.seen = []

    def after_step(self, loop, step):
        self.seen.append((step['skipped'] == 0, numpy_weights(loop)))


class OverflowOn(LossScaler):
    """Dynamic scaling, but the micro-batches in `poison` get a loss x 2^30: their FP16
    gradients overflow while the loss the loop records stays finite."""

    def __init__(self, poison, **kwargs):
        super().__init__('dynamic', **kwargs)
        self.poison = set(poison)
        self.calls = 0

    def backward(self, losses, trainer=None):
        if self.calls in self.poison:
            with mx.autograd.record():
                losses = [loss * 2.0 ** 30 for loss in losses]
        self.calls += 1
        super().backward(losses, trainer)


# ----- EMA ---------------------------------------------------------------------------------
def test_ema_equals_numpy_reference_and_ignores_skipped_steps(batches):
    """Steps 0 and 3 overflow (injected): they are skipped and must not move the EMA."""
    ema = ModelEMA(decay=0.9, ramp=2.0)
    rec = WeightsAfterStep()
    scaler = OverflowOn(poison={0, 3}, init_scale=0.25)
    loop = make_loop(ListLoader(batches * 2), 'fp16', scaler=scaler, hooks=[ema, rec])
    start = initial_weights()  # same seed, same init
    loop.train(0, 1)
    applied = [w for ok, w in rec.seen if ok]
    assert 0 < len(applied) < len(rec.seen), 'need both skipped and applied steps'
    assert ema.updates == len(applied)
    reference = {k: v.astype(np.float64) for k, v in start.items()}
    for k, weights in enumerate(applied, start=1):
        d = 0.9 * (1 - math.exp(-k / 2.0))
        reference = {n: d * reference[n] + (1 - d) * weights[n] for n in reference}
    for name, value in ema.weights.items():
        np.testing.assert_allclose(value.asnumpy(), reference[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    assert any('running_mean' in n for n in ema.weights), 'BN statistics are averaged too'


def test_ema_decay_is_validated():
    with pytest.raises(ValueError, match='between|in \\(0, 1\\)'):
        ModelEMA(decay=1.0)


# ----- gradient accumulation ---------------------------------------------------------------
def eight_image_batches(count=2):
    net = get_model(MODEL['name'], classes=CLASSES, pretrained_base=False)
    net.initialize()
    out = []
    for i in range(count):
        image, gt, targets = yolo_training_batch(net, size=64, batch=8, seed=40 + i)
        out.append((image, gt) + tuple(targets))
    return out


def halves(batch):
    return [tuple(a[:4] for a in batch), tuple(a[4:] for a in batch)]


def trained(loop):
    weights = numpy_weights(loop)
    return {n: weights[n] for n, p in loop.param_names.items() if p.grad_req != 'null'}


def test_accumulate_2_at_batch_4_equals_batch_8_on_two_devices():
    """BatchNorm normalises each group of 4 images in both runs: images 0-3 and 4-7 are one
    device's share of a batch of 8 on 2 devices, and one accumulated batch of 4 on 1 device.
    So the summed gradients, and the updates, agree to float rounding (summation order)."""
    full = eight_image_batches()
    wide = make_loop(ListLoader(full), contexts=[mx.cpu(0), mx.cpu(1)], batch_size=8,
                     net=two_device_net())
    wide.train(0, 1)
    split = [h for b in full for h in halves(b)]
    accumulated = make_loop(ListLoader(split), batch_size=4, accumulate=2)
    accumulated.train(0, 1)
    assert accumulated.trainer._optimizer.num_update == wide.trainer._optimizer.num_update == 2
    assert accumulated.iteration == 4 and wide.iteration == 2
    a, b = trained(wide), trained(accumulated)
    start = initial_weights()
    assert any(not np.array_equal(a[n], start[n]) for n in a)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_overflow_inside_an_accumulation_window_skips_the_whole_update(batches):
    rec = WeightsAfterStep()
    scaler = OverflowOn(poison={1}, init_scale=0.25)   # second micro-batch of window 0
    loop = make_loop(ListLoader(batches), 'fp16', scaler=scaler, hooks=[rec], accumulate=2)
    start = initial_weights()
    loop.train(0, 1)
    (ok0, after0), (ok1, after1) = rec.seen
    assert not ok0 and ok1
    learned = [n for n, p in loop.param_names.items() if p.grad_req != 'null']
    assert all(np.array_equal(after0[n], start[n]) for n in learned), \
        'a skipped window must leave every trained weight untouched (BN statistics move: ' \
        'the forward pass ran)'
    assert loop.scaler.total_skips == 1 and loop.scaler.scale_value == 0.125, \
        'the scale backs off once per update, not per micro-batch'
    assert any(not np.array_equal(after1[n], start[n]) for n in start)
    assert loop.trainer._optimizer.num_update == 1


# ----- gradient clipping -------------------------------------------------------------------
class GradNorms(HookBase):
    def __init__(self):
        self.norms = []

    def after_step(self, loop, step):
        self.norms.append(step['grad_norm'])


def test_clipped_global_norm_matches_numpy_over_two_devices(batches):
    full = eight_image_batches(count=1)
    rec = GradNorms()
    loop = make_loop(ListLoader(full), contexts=[mx.cpu(0), mx.cpu(1)], batch_size=8,
                     clip_grad=1e-3, hooks=[rec], net=two_device_net())
    start = initial_weights()
    loop.train(0, 1)
    ctx = mx.cpu(0)
    grads = {n: p.grad(ctx).asnumpy().astype(np.float64) for n, p in loop.param_names.items()
             if p.grad_req != 'null'}   # the all-reduced sum over both devices
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values())) / 8
    assert rec.norms[0] == pytest.approx(norm, rel=1e-5)
    factor = 1e-3 / norm
    assert factor < 1, 'the test must clip'
    after = numpy_weights(loop)
    lr, wd = 0.001, 5e-4
    for name, g in grads.items():
        wd_mult = loop.param_names[name].wd_mult
        expected = start[name] - lr * (g / 8 * factor + wd * wd_mult * start[name])
        np.testing.assert_allclose(after[name], expected, rtol=1e-5, atol=1e-8, err_msg=name)


# ----- the run state rolls back as a whole -------------------------------------------------
def state_as_numpy(loop):
    state = loop.capture()
    arrays = {'w:' + k: v.asnumpy() for k, v in state.weights.items()}
    arrays.update({k: v.asnumpy() for k, v in state.arrays().items()})
    return arrays, dict(state.meta['scaler']), dict(state.meta['optimizer']['counters'])


def test_rollback_restores_weights_optimizer_scaler_and_ema_exactly(batches):
    loop = make_loop(ListLoader(batches), 'fp16', hooks=[ModelEMA(decay=0.5, ramp=1.0)],
                     guard=NanGuard(snapshot_interval=1000))
    loop.train(0, 1)
    before = state_as_numpy(loop)
    snapshot = loop.capture()
    loop.train(1, 2)
    moved = state_as_numpy(loop)
    assert any(not np.array_equal(moved[0][k], before[0][k]) for k in before[0])
    assert moved[1] != before[1] or moved[2] != before[2]
    loop.restore(snapshot, rollback=True)
    after = state_as_numpy(loop)
    assert set(after[0]) == set(before[0]) and any(k.startswith('ema:') for k in after[0])
    differing = [k for k in before[0] if not np.array_equal(after[0][k], before[0][k])]
    assert not differing, differing[:5]
    assert after[1] == before[1] and after[2] == before[2]


# ----- what hooks may do -------------------------------------------------------------------
def test_train_loop_takes_at_most_8_parameters():
    params = [p for p in inspect.signature(TrainLoop).parameters.values()]
    assert len(params) <= 8, [p.name for p in params]


class AddsScalars(HookBase):
    """A per-step scalar from the start, a per-epoch one from epoch 1 on only."""

    def after_update(self, loop, applied):
        loop.record.put_scalar('my_step', float(loop.iteration))

    def end_of_epoch(self, loop):
        if loop.epoch >= 1:
            loop.record.put_scalar('my_epoch', 10.0 + loop.epoch)


def test_a_hooks_new_scalar_reaches_the_csv_files_and_tensorboard(batches, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    prefix = str(tmp_path / 'run')
    loop = make_loop(ListLoader(batches), hooks=[AddsScalars(), *csv_hooks(prefix),
                                                TensorBoardHook(prefix + '_tb')])
    loop.train(0, 2)
    steps = read_metrics(prefix + '_steps.csv')
    assert [float(r['my_step']) for r in steps] == [float(r['iteration']) for r in steps]
    epochs = read_metrics(prefix + '_metrics.csv')
    # the column appeared in the second row: the header widened, the first row kept
    assert [r['my_epoch'] for r in epochs] == ['', '11.0']
    assert list(epochs[0])[:len(EPOCH_FIELDS)] == list(EPOCH_FIELDS)
    events = EventAccumulator(prefix + '_tb')
    events.Reload()
    assert [e.value for e in events.Scalars('epoch/my_epoch')] == [11.0]
    assert [e.step for e in events.Scalars('train/my_step')] == \
        [int(r['iteration']) for r in steps]


class RequestStop(HookBase):
    def __init__(self, at_iteration=None, at_epoch=None):
        self.at_iteration, self.at_epoch = at_iteration, at_epoch

    def after_step(self, loop, step):
        if loop.iteration == self.at_iteration:
            loop.request_stop('enough steps')

    def after_epoch(self, loop, epoch):
        if loop.epoch == self.at_epoch:
            loop.request_stop('enough epochs')


def test_a_stop_request_during_a_step_ends_training_after_the_voted_step(batches):
    rec = WeightsAfterStep()
    loop = make_loop(ListLoader(batches), hooks=[RequestStop(at_iteration=2), rec])
    loop.train(0, 3)
    # requested after step 2, voted at step 3: every worker stops there
    assert loop.iteration == 3 and len(rec.seen) == 3
    assert loop.stop_requested and loop.stop_reason == 'enough steps'


def test_a_stop_request_at_an_epoch_end_ends_training_after_that_epoch(batches):
    loop = make_loop(ListLoader(batches), hooks=[RequestStop(at_epoch=0)])
    loop.train(0, 3)
    assert loop.epoch == 0 and loop.iteration == len(batches) and loop.epoch_done
    assert loop.stop_reason == 'enough epochs'


class PeerRequests:
    """Two workers; the other one's hook asks to stop at its step `at` (one process)."""
    rank, num_workers, grad_scale, no_switch_reason = 0, 2, 1.0, None

    def __init__(self, at):
        self.at, self.votes = at, 0

    def vote(self, healthy, stop=None):
        self.votes += 1
        return healthy, stop or ('request' if self.votes == self.at else None)

    def wait_for_all(self):
        pass


def test_another_workers_stop_request_stops_this_worker_at_the_same_step(batches):
    loop = make_loop(ListLoader(batches), workers=PeerRequests(at=2))
    loop.train(0, 3)
    assert loop.iteration == 2 and loop.stop_reason == 'stop requested by another worker'


# ----- --patience ---------------------------------------------------------------------------
class ScriptedMap(HookBase):
    """Stands in for the evaluation hook: epoch e's mAP is `maps[e]`."""

    def __init__(self, maps):
        self.maps = maps

    def end_of_epoch(self, loop):
        loop.record.put_scalar('map', self.maps[loop.epoch])


MAPS = [0.1, 0.3, 0.2, 0.3, 0.25, 0.9]  # best at epoch 1; epochs 2 and 3 do not beat it


def patience_loop(batches, hooks=()):
    return make_loop(ListLoader(batches[:1]), hooks=[ScriptedMap(MAPS), PatienceHook(2),
                                                     *hooks])


def test_patience_stops_when_map_has_not_improved_for_n_epochs(batches, caplog):
    rec = WeightsAfterStep()
    loop = patience_loop(batches, [rec])
    with caplog.at_level('INFO', logger='gluoncv_fp16'):
        loop.train(0, len(MAPS))
    assert loop.epoch == 3 and loop.iteration == 4 and len(rec.seen) == 4
    assert loop.stop_reason.startswith('early stop: validation mAP has not improved for 2 '
                                       'epochs (best 0.3000 at epoch 1')
    assert loop.record.epoch['stop_reason'] == loop.stop_reason
    assert loop.record.epoch['epochs_without_improvement'] == 2
    assert any('training stopped after epoch 3' in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match='patience must be >= 1'):
        PatienceHook(0)


def test_patience_counter_is_in_the_run_state_and_resume_stops_at_the_same_epoch(
        batches, tmp_path):
    from gluoncv_fp16.train.checkpoint import save_run_state
    from gluoncv_fp16.train.resume import resume_from
    straight = patience_loop(batches)
    straight.train(0, len(MAPS))
    first = patience_loop(batches)
    first.train(0, 3)  # epochs 0-2: one epoch without improvement so far
    path = str(tmp_path / 'run.ckpt')
    save_run_state(path, first.capture(copy=False), {'model': MODEL})
    resumed = patience_loop(batches)
    next_epoch = resume_from(resumed, path, MODEL)
    patience = [h for h in resumed.hooks if isinstance(h, PatienceHook)][0]
    assert (patience.best_map, patience.best_epoch) == (0.3, 1)
    resumed.train(next_epoch, len(MAPS))
    assert (resumed.epoch, resumed.iteration) == (straight.epoch, straight.iteration) == (3, 4)
    a, b = numpy_weights(straight), numpy_weights(resumed)
    assert all(np.array_equal(a[k], b[k]) for k in a)
