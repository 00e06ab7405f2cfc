"""A Horovod worker for tests/test_horovod.py (run by horovodrun, not by pytest). Each
worker writes ``rank<r>.params`` and ``rank<r>.json`` to argv[1]; argv[2] is the mode.

``rollback``: rank 1 alone has an inf in its local gradient at its second step (before the
allreduce) and a NaN image at its fourth. Every worker must skip the second step (the
overflow check reads the all-reduced gradients), roll back at the fourth (the health
vote is a Horovod allreduce), train one iteration in FP32 -- a new DistributedTrainer --
return to FP16, and end with identical, finite weights.

``giveup``: rank 1's third image is NaN, and again its fifth and sixth after the FP32
fallback step, so the guard (one recovery allowed) gives up at iteration 5. Every worker
must give up at the same step, and rank 0 must have written ``run_diverged.ckpt`` (the
state after the fallback, iteration 4) before any exits non-zero, as the trainer does.
(The fallback step itself gets a clean image: on CPU an FP32 forward of a NaN image was
measured to return finite losses with NaN gradients, which an FP32 step applies.)

``die``: rank 1 kills itself (SIGKILL) after its second step; horovodrun must end the job.

``stop``: rank 1 alone gets a SIGTERM after its second step; the per-step vote must stop
both after the third, with rank 0's ``run_last.ckpt`` saved at that iteration first.

``wait``: after its second step each worker prints ``rank <r> waits for a signal`` and
waits (up to 120 s) until a SIGTERM or SIGINT has reached it -- sent by whoever runs the
test -- then trains on; the vote must stop both after the third step, as for ``stop``.
"""
import json
import os
import signal
import sys
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

import mxnet as mx  # noqa: E402

from gluoncv_fp16.distributed.distributed import horovod_trainer, init_horovod  # noqa: E402
from gluoncv_fp16.distributed.workers import WorkerSetup  # noqa: E402
from gluoncv_fp16.precision.loss_scaler import LossScaler  # noqa: E402
from gluoncv_fp16.precision.policy import get_policy  # noqa: E402
from gluoncv_fp16.train.build import train_or_save_last_good  # noqa: E402
from gluoncv_fp16.train.checkpoint import structural_params  # noqa: E402
from gluoncv_fp16.train.hooks import CheckpointHook  # noqa: E402
from gluoncv_fp16.train.loop import HookBase, LoopOptions, StopRequested, TrainLoop  # noqa: E402
from gluoncv_fp16.train.stopping import stop_on_signals  # noqa: E402
from gluoncv_fp16.train.nan_guard import NanGuard, TrainingDiverged  # noqa: E402
from helpers import ListLoader, make_batches, make_net  # noqa: E402

INF_AT, NAN_AT = 1, 3  # rank 1's second and fourth steps (0-based scaler iterations)


class LocalInfScaler(LossScaler):
    """Rank 1's own gradient overflows at `INF_AT`, before the allreduce sees it."""

    def __init__(self, net, poke, **kwargs):
        super().__init__('dynamic', **kwargs)
        self.net, self.poke = net, poke

    def backward(self, losses, trainer=None):
        super().backward(losses, trainer)
        if self.poke and self.iteration == INF_AT:
            param = next(p for p in self.net.collect_params().values() if p.grad_req != 'null')
            param.list_grad()[0][:] = float('inf')


class Record(HookBase):
    """Iterations whose update was skipped, the signal of ``die`` / ``stop``, the wait of
    ``wait``."""

    def __init__(self, signal_after=None, signum=None, wait_after=None):
        self.skipped, self.signal_after, self.signum = [], signal_after, signum
        self.wait_after = wait_after

    def after_step(self, loop, step):
        if step['skipped']:
            self.skipped.append(loop.iteration)
        if self.signal_after is not None and loop.iteration == self.signal_after:
            os.kill(os.getpid(), self.signum)
        if self.wait_after is not None and loop.iteration == self.wait_after:
            print('rank {} waits for a signal'.format(loop.workers.rank), flush=True)
            deadline = time.monotonic() + 120
            while not loop.signal_received and time.monotonic() < deadline:
                time.sleep(0.05)


def main(out, mode):
    hvd, rank, size, _ = init_horovod()
    workers = WorkerSetup(None, rank, size, hvd=hvd)

    def make_trainer(net, multi_precision):
        return horovod_trainer(net.collect_params(), 'sgd',
                               {'learning_rate': 0.001, 'momentum': 0.9,
                                'multi_precision': multi_precision}, hvd=hvd)

    bad = {'rollback': {NAN_AT}, 'giveup': {2, 4, 5}}.get(mode, set())
    loader = ListLoader(make_batches(count=3, seed=10 * rank) * 2,
                        nan_at=bad if rank == 1 else ())
    guard = NanGuard(fallback_iters=1, max_recoveries=1 if mode == 'giveup' else 2,
                     snapshot_interval=1, no_rollback_reason=workers.no_rollback_reason)
    prefix = os.path.join(out, 'run')
    signum = {'die': signal.SIGKILL, 'stop': signal.SIGTERM}.get(mode)
    record = Record(signal_after=2 if (signum and rank == 1) else None, signum=signum,
                    wait_after=2 if mode == 'wait' else None)
    hooks = [record] + ([CheckpointHook(prefix, 1000, lambda: {})] if rank == 0 else [])
    net = make_net()
    loop = TrainLoop(net, [mx.cpu()], loader, make_trainer,
                     LocalInfScaler(net, poke=(mode == 'rollback' and rank == 1),
                                    init_scale=0.25),
                     get_policy('fp16'), hooks, LoopOptions(2, nan_guard=guard, workers=workers))
    result = {'rank': rank, 'size': size}
    try:
        with stop_on_signals(loop):
            train_or_save_last_good(loop, SimpleNamespace(run_prefix=prefix, epochs=1,
                                                          max_iters=0), 0)
    except TrainingDiverged as err:
        result['diverged'] = str(err)
        raise  # exits non-zero, like the trainer
    except StopRequested as stop:
        result['stopped'] = str(stop)
        print(stop, file=sys.stderr)
        sys.exit(stop.exit_code)
    finally:
        result.update(iteration=loop.iteration, events=guard.events,
                      recoveries=guard.recoveries, phase=loop.phase, skipped=record.skipped)
        with open(os.path.join(out, 'rank{}.json'.format(rank)), 'w') as f:
            json.dump(result, f)
    mx.nd.save(os.path.join(out, 'rank{}.params'.format(rank)), structural_params(loop.net))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
