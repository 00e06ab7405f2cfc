"""The training loop: precision phases, NaN recovery, and exact resume."""
import numpy as np
import pytest

from helpers import MODEL, ListLoader, make_batches, make_loop, make_net
from gluoncv_fp16.train.checkpoint import save_run_state, structural_params
from gluoncv_fp16.train.loop import LOSS_NAMES, HookBase
from gluoncv_fp16.train.nan_guard import NanGuard, TrainingDiverged
from gluoncv_fp16.train.resume import resume_from
from gluoncv_fp16.precision.loss_scaler import LossScaler

@pytest.fixture(scope='module')
def batches():
    return make_batches()


class Recorder(HookBase):
    def __init__(self):
        self.steps = []
        self.epochs = []

    def after_step(self, loop, step):
        self.steps.append((loop.iteration, step['phase'], dict(step)))

    def after_epoch(self, loop, epoch):
        self.epochs.append((loop.epoch, loop.phase, dict(epoch)))


def weight_dtypes(net):
    conv = net.yolo_outputs[0].prediction.weight
    gamma = [p for n, p in net.collect_params().items() if n.endswith('gamma')][0]
    return np.dtype(conv.dtype), np.dtype(gamma.dtype)


def test_fp32_loop_trains_and_counts(batches):
    rec = Recorder()
    loop = make_loop(ListLoader(batches), hooks=[rec])
    before = structural_params(loop.net)
    loop.train(0, 2)
    assert loop.iteration == 6 and [e[0] for e in rec.epochs] == [0, 1]
    assert all(np.isfinite([s[2][k] for k in LOSS_NAMES]).all() for s in rec.steps)
    after = structural_params(loop.net)
    assert any(not np.array_equal(before[k].asnumpy(), after[k].asnumpy()) for k in before)


def test_fp16_loop_runs_in_half_precision_with_loss_scaling(batches):
    rec = Recorder()
    loop = make_loop(ListLoader(batches), 'fp16', hooks=[rec])
    before = structural_params(loop.net)
    loop.train(0, 1)
    assert loop.phase == 'fp16'
    assert weight_dtypes(loop.net) == (np.float16, np.float32)
    assert any(not s[2]['skipped'] for s in rec.steps) and loop.scaler.scale_value <= 0.25
    after = structural_params(loop.net)
    assert any(not np.array_equal(before[k].asnumpy(), after[k].asnumpy()) for k in before)


def test_fp32_warmup_then_fp16_continues_optimizer_state(batches):
    rec = Recorder()
    loop = make_loop(ListLoader(batches), 'fp16', warmup=1, hooks=[rec],
                     scaler=LossScaler('dynamic', init_scale=2.0 ** -6))
    loop.train(0, 2)
    assert [e[1] for e in rec.epochs] == ['fp32', 'fp16']
    assert weight_dtypes(loop.net)[0] == np.float16
    optimizer = loop.trainer._optimizer
    applied = sum(1 for s in rec.steps if not s[2]['skipped'])
    assert applied >= 4 and optimizer.num_update == applied, \
        'the optimizer step count (LR schedule position) must carry over the switch'


def test_injected_nan_rolls_back_trains_fp32_then_returns_to_fp16(batches):
    rec = Recorder()
    guard = NanGuard(fallback_iters=2, max_recoveries=2, snapshot_interval=1)
    loop = make_loop(ListLoader(batches * 3, nan_at={3}), 'fp16', guard=guard, hooks=[rec])
    loop.train(0, 1)
    assert guard.recoveries == 1 and guard.events[0]['reason'].startswith('non-finite loss')
    phases = [(it, phase) for it, phase, _ in rec.steps]
    assert phases[3:5] == [(5, 'fp32'), (6, 'fp32')], phases
    assert loop.phase == 'fp16' and phases[-1][1] == 'fp16'
    params = structural_params(loop.net)
    assert all(np.isfinite(v.asnumpy()).all() for v in params.values())


@pytest.mark.parametrize('precision, cure', [('fp16', 'use --fp32-warmup-epochs'),
                                             ('fp32', 'clip gradients with --clip-grad')])
def test_gives_up_after_bounded_recoveries(batches, precision, cure):
    guard = NanGuard(fallback_iters=1, max_recoveries=1, snapshot_interval=1)
    loop = make_loop(ListLoader(batches * 2, nan_at={2, 3, 4, 5}), precision, guard=guard)
    with pytest.raises(TrainingDiverged, match='after 1 recoveries') as raised:
        loop.train(0, 1)
    assert cure in str(raised.value)  # an FP32 run has no FP32 warm-up to suggest


def test_overflowing_gradients_are_skipped_not_applied(batches):
    rec = Recorder()
    scaler = LossScaler('dynamic', init_scale=2.0 ** 24, max_scale=2.0 ** 24)
    loop = make_loop(ListLoader(batches), 'fp16', scaler=scaler, hooks=[rec])
    loop.train(0, 1)
    assert loop.scaler.total_skips >= 1, 'a 2^24 scale must overflow FP16 gradients'
    assert loop.scaler.scale_value < 2.0 ** 24


def test_a_skipped_step_is_logged_with_the_runs_iteration_after_an_fp32_phase(batches, caplog):
    """After 3 FP32 iterations, the first FP16 step overflows (scale 2^24): the log line
    names iteration 4, as the step record does, not the scaler's own first step."""
    rec = Recorder()
    scaler = LossScaler('dynamic', init_scale=2.0 ** 24, max_scale=2.0 ** 24)
    loop = make_loop(ListLoader(batches), 'fp16', scaler=scaler, warmup=1, hooks=[rec])
    with caplog.at_level('INFO', logger='gluoncv_fp16'):
        loop.train(0, 2)
    skipped = [it for it, phase, step in rec.steps if step['skipped']]
    assert skipped and skipped[0] == 4, rec.steps
    logged = [r.getMessage() for r in caplog.records if 'step skipped' in r.getMessage()]
    assert logged[0].startswith('non-finite gradient at iteration 4:'), logged


@pytest.mark.parametrize('precision, warmup', [('fp32', 0), ('fp16', 1)])
def test_resume_equals_uninterrupted_run(batches, tmp_path, precision, warmup):
    straight = make_loop(ListLoader(batches), precision, warmup=warmup)
    straight.train(0, 3)

    first = make_loop(ListLoader(batches), precision, warmup=warmup)
    first.train(0, 2)
    path = str(tmp_path / 'run.ckpt')
    save_run_state(path, first.capture(copy=False), {'model': MODEL})

    resumed = make_loop(ListLoader(batches), precision, warmup=warmup, net=make_net(seed=99))
    next_epoch = resume_from(resumed, path, MODEL)
    assert next_epoch == 2 and resumed.iteration == 6
    resumed.train(next_epoch, 3)
    a, b = structural_params(straight.net), structural_params(resumed.net)
    assert all(np.isfinite(a[k].asnumpy()).all() for k in a)
    differing = [k for k in a if not np.array_equal(a[k].asnumpy(), b[k].asnumpy())]
    assert not differing, 'resumed run differs in {}'.format(differing[:5])


def test_guard_refuses_rollback_where_workers_cannot_agree(batches):
    from gluoncv_fp16.distributed.workers import WorkerSetup
    # every set-up has a collective health vote now (Horovod: tests/test_horovod.py)
    assert WorkerSetup(None, 0, 2, hvd=object()).no_rollback_reason is None
    assert WorkerSetup('device').no_rollback_reason is None
    guard = NanGuard(fallback_iters=1, max_recoveries=3, snapshot_interval=1,
                     no_rollback_reason='the workers cannot agree on a rollback')
    loop = make_loop(ListLoader(batches, nan_at={1}), 'fp16', guard=guard)
    with pytest.raises(TrainingDiverged, match='iteration 2: non-finite loss.*no rollback: '
                       'the workers cannot agree.*--resume auto'):
        loop.train(0, 1)
    assert guard.recoveries == 0
