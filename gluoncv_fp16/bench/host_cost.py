"""What an FP16 GPU waits for on the host: blocking reads per step, and snapshot cost.

``--reads``: builds a run from train_yolo3.py's own flags (default: the measurement of
the run-state issue, ``--fp16`` mobilenet0.25, 64 px, batch 2) and counts every blocking
host<->device read (``asnumpy``, ``asscalar``, ``wait_to_read``, ``waitall``) during the
training steps, NaN-guard snapshots included, validation excluded.

``--snapshot``: one NaN-guard snapshot of a network (default darknet53) against a plain
device copy of the same arrays, FP32 and FP16, interleaved, with the median of repeats.

    python scripts/host_cost.py --reads --steps 200
    python scripts/host_cost.py --snapshot --network darknet53 --repeats 7
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

READ_METHODS = ('asnumpy', 'asscalar', 'wait_to_read')


def count_reads(steps, extra_flags):
    """Blocking reads per training step through train_yolo3.py's config and build."""
    import mxnet as mx
    from gluoncv_fp16.train.build import build_training
    from gluoncv_fp16.train.config import FLAG_GROUPS, TrainConfig
    from gluoncv_fp16.utils.options import add_flags, from_namespace
    from gluoncv_fp16.train.loop import HookBase
    counter = {'reads': 0}

    def counted(fn):
        def wrapper(*args, **kwargs):
            counter['reads'] += 1
            return fn(*args, **kwargs)
        return wrapper

    class Marks(HookBase):
        def __init__(self):
            self.at_step = []

        def after_step(self, loop, step):
            self.at_step.append(counter['reads'])

    with tempfile.TemporaryDirectory() as out:
        argv = ['--fp16', '--gpus', '', '--network', 'mobilenet0.25', '--data-shape', '64',
                '--batch-size', '2', '--no-random-shape', '-j', '0', '--no-plots',
                '--epochs', '1000', '--val-interval', '1000', '--log-interval', '100000',
                '--save-prefix', out + os.sep, *extra_flags]
        # the training command's own flags and checks (bench sits below cli/)
        parser = add_flags(argparse.ArgumentParser(), TrainConfig, FLAG_GROUPS)
        cfg = from_namespace(TrainConfig, parser.parse_args(argv)).validate()
        loop, start = build_training(cfg)
        marks = Marks()
        loop.hooks.append(marks)
        originals = {name: getattr(mx.nd.NDArray, name) for name in READ_METHODS}
        original_waitall = mx.nd.waitall
        for name, fn in originals.items():
            setattr(mx.nd.NDArray, name, counted(fn))
        mx.nd.waitall = counted(original_waitall)
        try:
            loop.train(start, cfg.epochs, max_iters=steps)
        finally:
            for name, fn in originals.items():
                setattr(mx.nd.NDArray, name, fn)
            mx.nd.waitall = original_waitall
    marks = marks.at_step
    measured = len(marks) - 1  # steps between the first and the last mark
    per_step = (marks[-1] - marks[0]) / measured
    snapshots = loop.iteration // cfg.snapshot_interval
    print('blocking reads per step: {:.3f} ({} reads over {} steps, {} NaN-guard snapshots '
          'among them, validation excluded); flags: {}'.format(
              per_step, marks[-1] - marks[0], measured, snapshots, ' '.join(argv[:-1])))
    return per_step


def snapshot_cost(network, repeats):
    """Median seconds of a NaN-guard snapshot vs a plain copy of the same arrays."""
    import mxnet as mx
    import numpy as np
    from gluoncv_fp16.model_zoo import get_model, model_name
    from gluoncv_fp16.precision.policy import get_policy, policies
    from gluoncv_fp16.train.loop import TrainLoop
    from gluoncv_fp16.bench.mode import TensorBatches, one_batch
    name = model_name(network, 'custom')
    classes = ['circle', 'square', 'triangle']
    batch = one_batch(name, classes, 2, 64, seed=0)
    rows = {}
    loops = {}
    for mode in [p.name for p in policies(lambda p: not p.uses_amp)]:  # AMP: own process
        net = get_model(name, classes=classes, pretrained_base=False)
        net.initialize(mx.init.Xavier())
        net(mx.nd.zeros((1, 3, 64, 64)))

        def make_trainer(n, multi_precision):
            return mx.gluon.Trainer(n.collect_params(), 'sgd',
                                    {'learning_rate': 1e-4, 'momentum': 0.9, 'wd': 5e-4,
                                     'multi_precision': multi_precision},
                                    update_on_kvstore=False)
        loop = TrainLoop(net, [mx.cpu()], TensorBatches(batch, 1), make_trainer,
                         get_policy(mode).make_loss_scaler('dynamic', init_scale=1.0),
                         get_policy(mode), options=2)
        loop.train(0, 1)
        loops[mode] = loop
        rows[mode] = {'snapshot': [], 'copy': []}
    for _ in range(repeats):  # interleaved: snapshot, copy, per mode
        for mode, loop in loops.items():
            state = loop.capture(copy=False)
            arrays = list(state.weights.values()) + list(state.arrays().values())
            mx.nd.waitall()
            start = time.perf_counter()
            loop.capture()
            mx.nd.waitall()
            rows[mode]['snapshot'].append(time.perf_counter() - start)
            start = time.perf_counter()
            copies = [a.copy() for a in arrays]
            mx.nd.waitall()
            rows[mode]['copy'].append(time.perf_counter() - start)
            del copies
            rows[mode]['mb'] = sum(a.size * np.dtype(a.dtype).itemsize
                                   for a in arrays) / 2 ** 20
            rows[mode]['arrays'] = len(arrays)
    for mode, row in rows.items():
        snap, copy = statistics.median(row['snapshot']), statistics.median(row['copy'])
        print('{} {}: snapshot {:.1f} ms, plain device copy of the same {} arrays ({:.0f} MB) '
              '{:.1f} ms, ratio {:.2f} (median of {})'.format(
                  network, mode, snap * 1e3, row['arrays'], row['mb'], copy * 1e3,
                  snap / copy, repeats))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--reads', action='store_true', help='count blocking reads per step')
    p.add_argument('--steps', type=int, default=200, help='training steps for --reads')
    p.add_argument('--snapshot', action='store_true', help='snapshot vs plain device copy')
    p.add_argument('--network', default='darknet53', help='network for --snapshot')
    p.add_argument('--repeats', type=int, default=7)
    args, extra = p.parse_known_args(argv)
    if not (args.reads or args.snapshot):
        p.error('choose --reads and/or --snapshot')
    if args.reads:
        count_reads(args.steps, extra)
    if args.snapshot:
        snapshot_cost(args.network, args.repeats)
    return 0


if __name__ == '__main__':
    sys.exit(main())
