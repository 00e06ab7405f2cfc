"""Run the training command with faults the test chooses (for tests, not pytest-collected).

``python tests/fault_injection.py --nan-loss-at I,... -- ARGS`` trains like
``gluoncv-fp16-train ARGS``, except that the step that starts at run iteration I (batches
consumed before it) gets a NaN loss on every device, the first time this process reaches
I (after a rollback the same iteration trains normally). The NaN guard must roll back.

A fault is caused on purpose instead of counted on: whether a network overflows at a
given loss scale depends on the CPU's kernels (tests must pass on every CPU).
"""
import argparse
import os
import sys

# this checkout's package, also when another one is installed
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _iterations(text):
    return {int(v) for v in text.split(',') if v}


def install(nan_loss_at=()):
    """Patch `TrainLoop` of this process to cause the chosen faults."""
    from gluoncv_fp16.train.loop import TrainLoop

    pending = set(nan_loss_at)
    forward = TrainLoop.forward

    def faulty_forward(loop, parts):
        losses = forward(loop, parts)
        if loop.iteration in pending:
            pending.discard(loop.iteration)
            losses = [[loss * float('nan') for loss in device] for device in losses]
        return losses

    TrainLoop.forward = faulty_forward


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index('--')
    p = argparse.ArgumentParser()
    p.add_argument('--nan-loss-at', type=_iterations, required=True)
    install(p.parse_args(argv[:split]).nan_loss_at)
    from gluoncv_fp16.cli.train import main as train
    return train(argv[split + 1:])


if __name__ == '__main__':
    sys.exit(main())
