"""Measure one precision mode: training images/s and peak memory of full training steps.

One configuration per process (:func:`run_mode` starts ``python -m
gluoncv_fp16.bench.mode`` for it; scripts/benchmark.py and ``gluoncv-fp16-check`` use
it): MXNet AMP patches operators process-wide, and resident-memory peaks are per
process, so each row gets a fresh one.
A step is exactly the trainer's step (`TrainLoop.run_step`: forward, backward, gradient
all-reduce, overflow check, update); time is wall clock around `waitall`, after warm-up
steps, as the median and spread of several repeats.
"""
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time

import mxnet as mx
import numpy as np

__all__ = ['measure', 'run_mode', 'one_batch', 'TensorBatches', 'peak_memory_mb']

logger = logging.getLogger(__name__)


class TensorBatches:
    """The same ready batch forever: separates compute from data loading."""

    def __init__(self, batch, steps):
        self.batch = batch
        self.steps = steps

    def set_epoch(self, epoch):
        pass

    def __len__(self):
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield self.batch


def peak_memory_mb(contexts):
    """GPU: used memory of the first GPU (MXNet has no peak API; sampled after steps).
    CPU: the process's peak resident set size."""
    gpus = [c for c in contexts if c.device_type == 'gpu']
    if gpus:
        free, total = mx.context.gpu_memory_info(gpus[0].device_id)
        return (total - free) / 2.0 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def one_batch(model_name, classes, batch_size, data_shape, seed):
    from ..data.synthetic import render_sample
    from ..data.transforms import YOLO3FastTrainTransform
    from ..data.loader import pad_stack
    from ..model_zoo import get_model
    net = get_model(model_name, pretrained_base=False,
                    **({'classes': classes} if model_name.endswith('_custom') else {}))
    net.initialize()
    transform = YOLO3FastTrainTransform(data_shape, data_shape, net)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(batch_size):
        img, label = render_sample(rng, 500, 375)
        samples.append(transform.apply(img[:, :, ::-1].copy(), label, rng=rng))
    image, obj, centers, scales, weights, clas, gt = zip(*samples)
    arrays = [np.stack(image), pad_stack(gt)] + [np.stack(t) for t in
                                                  (obj, centers, scales, weights, clas)]
    return tuple(mx.nd.array(a, dtype='float32') for a in arrays)


def measure(mode, model_name, data_shape, batch_size, contexts, warmup=3, iters=10,
            repeats=3, classes=('circle', 'square', 'triangle'), seed=0):
    """Images/s (median, min, max over `repeats`) and peak memory for one configuration."""
    from ..model_zoo import get_model
    from ..precision.policy import activate_amp, get_policy
    from ..train.devices import check_devices
    from ..train.loop import TrainLoop
    policy = get_policy(mode)
    check_devices(contexts, policy)
    batch = one_batch(model_name, list(classes), batch_size, data_shape, seed)
    activate_amp(policy)
    net = get_model(model_name, pretrained_base=False,
                    **({'classes': list(classes)} if model_name.endswith('_custom') else {}))
    net.initialize(mx.init.Xavier(), ctx=contexts)
    net(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=contexts[0]))
    net.hybridize()

    def make_trainer(n, multi_precision):
        return mx.gluon.Trainer(n.collect_params(), 'sgd',
                                {'learning_rate': 1e-4, 'momentum': 0.9, 'wd': 5e-4,
                                 'multi_precision': multi_precision},
                                kvstore='device' if len(contexts) > 1 else None,
                                update_on_kvstore=False)
    scaler = policy.make_loss_scaler('dynamic', init_scale=1.0)
    loop = TrainLoop(net, contexts, TensorBatches(batch, 0), make_trainer, scaler, policy,
                     options=batch_size)
    loop.set_phase(mode)
    window = [loop.to_devices(batch)]
    for _ in range(warmup):
        loop.run_step(window)
    mx.nd.waitall()
    speeds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            loop.run_step(window)
        mx.nd.waitall()
        speeds.append(iters * batch_size / (time.perf_counter() - start))
    return {'mode': mode, 'network': model_name, 'data_shape': data_shape,
            'batch_size': batch_size, 'devices': ','.join(str(c) for c in contexts),
            'images_per_sec': statistics.median(speeds), 'images_per_sec_min': min(speeds),
            'images_per_sec_max': max(speeds), 'peak_memory_mb': peak_memory_mb(contexts),
            'skipped_steps': int(getattr(scaler, 'total_skips', 0))}


def run_mode(mode, network, shape, batch, ctx, warmup, iters, repeats):
    """:func:`measure` `mode` for ``yolo3_<network>_custom`` in a process of its own.

    Returns its result dict, or ``{'mode': mode, 'error': reason}`` (a device that cannot
    run the mode, or the process's last line when it failed).
    """
    cmd = [sys.executable, '-m', 'gluoncv_fp16.bench.mode', '--mode', mode,
           '--network', 'yolo3_{}_custom'.format(network), '--data-shape', str(shape),
           '--batch-size', str(batch), '--ctx', ctx, '--warmup', str(warmup),
           '--iters', str(iters), '--repeats', str(repeats)]
    # the child imports this very package, wherever it was imported from
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [here] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    tail = (out.stderr.strip().splitlines() or ['no output'])[-1]
    return {'mode': mode, 'error': 'benchmark process failed: ' + tail}


def main(argv=None):
    """Child-process entry: one JSON line with the result (or the error) on stdout."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument('--mode')
    p.add_argument('--network')
    p.add_argument('--data-shape', type=int)
    p.add_argument('--batch-size', type=int)
    p.add_argument('--ctx')
    p.add_argument('--warmup', type=int)
    p.add_argument('--iters', type=int)
    p.add_argument('--repeats', type=int)
    a = p.parse_args(argv)
    from ..train.config import ConfigError
    from ..train.devices import make_contexts
    try:
        result = measure(a.mode, a.network, a.data_shape, a.batch_size,
                         make_contexts(a.ctx.split(',')), a.warmup, a.iters, a.repeats)
    except ConfigError as err:
        result = {'mode': a.mode, 'error': str(err)}
    print('RESULT ' + json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
