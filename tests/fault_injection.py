"""Run ``train_yolo3.py`` with faults the test chooses (for tests, not pytest-collected).

``python tests/fault_injection.py [--nan-loss-at I,...] [--inf-grad-at I,...] -- ARGS``
trains like ``python train_yolo3.py ARGS``, except that:

* ``--nan-loss-at``: the step that starts at run iteration I (batches consumed before it)
  gets a NaN loss on every device, the first time this process reaches I (after a
  rollback the same iteration trains normally). The NaN guard must roll back.
* ``--inf-grad-at``: that step's first trained gradient gets an inf after the backward
  pass (an overflow the loss scaler must skip), every time the iteration is reached.

A fault is caused on purpose instead of counted on: whether a network overflows at a
given loss scale depends on the CPU's kernels (tests must pass on every CPU).
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _iterations(text):
    return {int(v) for v in text.split(',') if v}


def install(nan_loss_at=(), inf_grad_at=()):
    """Patch `TrainLoop` of this process to cause the chosen faults."""
    import mxnet as mx
    from gluoncv_fp16.train.loop import TrainLoop

    nan_pending = set(nan_loss_at)
    forward, allreduce_step = TrainLoop.forward, TrainLoop.run_step

    def faulty_forward(loop, parts):
        losses = forward(loop, parts)
        if loop.iteration in nan_pending:
            nan_pending.discard(loop.iteration)
            losses = [[l * float('nan') for l in device] for device in losses]
        return losses

    def faulty_run_step(loop, window, before_read=None):
        if loop.iteration in inf_grad_at:
            trainer = loop.trainer
            allreduce = trainer.allreduce_grads

            def allreduce_then_poison():
                allreduce()
                grad = loop.trained[0].grad(loop.contexts[0])
                grad[:] = mx.nd.full(grad.shape, float('inf'), dtype=grad.dtype,
                                     ctx=grad.context)
            trainer.allreduce_grads = allreduce_then_poison
            try:
                return allreduce_step(loop, window, before_read)
            finally:
                del trainer.allreduce_grads
        return allreduce_step(loop, window, before_read)

    TrainLoop.forward = faulty_forward
    TrainLoop.run_step = faulty_run_step


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index('--')
    p = argparse.ArgumentParser()
    p.add_argument('--nan-loss-at', type=_iterations, default=set())
    p.add_argument('--inf-grad-at', type=_iterations, default=set())
    faults = p.parse_args(argv[:split])
    install(faults.nan_loss_at, faults.inf_grad_at)
    sys.path.insert(0, ROOT)
    import train_yolo3
    return train_yolo3.main(argv[split + 1:])


if __name__ == '__main__':
    sys.exit(main())
