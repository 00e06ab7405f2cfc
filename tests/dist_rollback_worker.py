"""A dist_sync worker for tests/test_dist_training.py (run by scripts/launch.py, not by
pytest): rank 1 alone gets a NaN image at its third step. With the per-step health vote
both workers must roll back at that same step, keep training, and end with identical,
finite weights. Each worker writes ``rank<r>.params`` and ``rank<r>.json`` to argv[1].

``giveup`` as argv[2]: rank 1's images stay NaN, so the guard gives up. Both workers must
give up at the same step, and rank 0 must have written ``run_diverged.ckpt`` before
either exits non-zero (which makes the launcher stop the job), as the trainer does.

``stop``: rank 1 alone gets a SIGTERM after its second step. The per-step vote must stop
both workers after the third, rank 0 must have saved ``run_last.ckpt`` at that iteration
before either exits, and both exit 143 with the one-line message.

``request``: rank 0 alone has a hook that asks to stop after its second step (as early
stopping on the chief's mAP does). The vote must end both workers' training, without an
error, after the same step.
"""
import json
import os
import signal
import sys
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import mxnet as mx  # noqa: E402
from mxnet import gluon  # noqa: E402

from gluoncv_fp16.train.build import train_or_save_last_good  # noqa: E402
from gluoncv_fp16.train.checkpoint import structural_params  # noqa: E402
from gluoncv_fp16.train.hooks import CheckpointHook  # noqa: E402
from gluoncv_fp16.distributed.distributed import fail_fast, worker_info  # noqa: E402
from gluoncv_fp16.train.loop import HookBase, LoopOptions, TrainLoop  # noqa: E402
from gluoncv_fp16.train.stopping import stop_on_signals  # noqa: E402
from gluoncv_fp16.train.nan_guard import NanGuard, TrainingDiverged  # noqa: E402
from gluoncv_fp16.distributed.workers import WorkerSetup, prepare_dist_params  # noqa: E402
from gluoncv_fp16.precision.loss_scaler import LossScaler  # noqa: E402
from gluoncv_fp16.precision.policy import get_policy  # noqa: E402
from helpers import ListLoader, make_batches, make_net  # noqa: E402

NAN_AT = 2  # rank 1's third batch


class RequestStop(HookBase):
    """Ask the loop to stop after step `after` (this worker only)."""

    def __init__(self, after):
        self.after = after

    def after_step(self, loop, step):
        if loop.iteration == self.after:
            loop.request_stop('rank 0 has seen enough')


class SignalSelf(HookBase):
    """Send this process SIGTERM after step `after`, as a preempting cluster might."""

    def __init__(self, after):
        self.after = after

    def after_step(self, loop, step):
        if loop.iteration == self.after:
            os.kill(os.getpid(), signal.SIGTERM)


def main(out, mode=None):
    giveup = mode == 'giveup'
    kv = mx.kv.create('dist_sync')
    rank, size = worker_info(kv)
    workers = WorkerSetup(kv, rank, size, grad_scale=float(size),
                          no_switch_reason='dist kvstore')

    def make_trainer(net, multi_precision):
        prepare_dist_params(net.collect_params())
        return gluon.Trainer(net.collect_params(), 'sgd',
                             {'learning_rate': 0.001, 'momentum': 0.9,
                              'multi_precision': multi_precision},
                             kvstore=kv, update_on_kvstore=False)

    bad = set(range(NAN_AT, 6)) if giveup else set() if mode == 'stop' else {NAN_AT}
    loader = ListLoader(make_batches(count=3, seed=10 * rank) * 2,
                        nan_at=bad if rank == 1 else ())
    guard = NanGuard(fallback_iters=1, max_recoveries=1 if giveup else 2, snapshot_interval=1,
                     no_rollback_reason=workers.no_rollback_reason)
    prefix = os.path.join(out, 'run')
    hooks = [CheckpointHook(prefix, 1000, lambda: {})] if rank == 0 else []
    if mode == 'stop' and rank == 1:
        hooks.append(SignalSelf(after=2))
    if mode == 'request' and rank == 0:
        hooks.append(RequestStop(after=2))
    loop = TrainLoop(make_net(), [mx.cpu()], loader, make_trainer,
                     LossScaler('dynamic', init_scale=0.25), get_policy('fp16'), hooks,
                     LoopOptions(2, nan_guard=guard, workers=workers))
    if mode == 'stop':
        try:
            with stop_on_signals(loop):
                train_or_save_last_good(loop, SimpleNamespace(run_prefix=prefix, epochs=1,
                                                              max_iters=0), 0)
        finally:
            with open(os.path.join(out, 'rank{}.json'.format(rank)), 'w') as f:
                json.dump({'iteration': loop.iteration}, f)
        return
    if giveup:
        try:
            train_or_save_last_good(loop, SimpleNamespace(run_prefix=prefix, epochs=1,
                                                          max_iters=0), 0)
        except TrainingDiverged as err:
            with open(os.path.join(out, 'rank{}.json'.format(rank)), 'w') as f:
                json.dump({'iteration': loop.iteration, 'diverged': str(err)}, f)
            raise  # exits non-zero through fail_fast, like the trainer
        return
    loop.train(0, 1)
    mx.nd.save(os.path.join(out, 'rank{}.params'.format(rank)), structural_params(loop.net))
    with open(os.path.join(out, 'rank{}.json'.format(rank)), 'w') as f:
        json.dump({'iteration': loop.iteration, 'events': guard.events,
                   'recoveries': guard.recoveries, 'phase': loop.phase,
                   'stop_reason': loop.stop_reason}, f)


if __name__ == '__main__':
    with fail_fast():
        main(sys.argv[1], *sys.argv[2:])
