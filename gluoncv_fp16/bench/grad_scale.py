"""How much an FP16 gradient loses at each loss scale, from a checkpoint's weights.

A dynamic loss scale that settles low (YOLOv3's summed loss drives it to about 1 in the
first steps, and it grows back only after 1000 clean steps) could flush small FP16
gradients to zero late in a run. This measures it: one training batch of the
checkpoint's own dataset, the gradient computed in FP32 and in FP16 at several loss
scales from the checkpoint's FP32 weights, and per scale the relative L2 error of the
FP16 gradient, its median and worst per-tensor error, and the fraction of gradient
values that FP16 flushed to zero where FP32 has them non-zero.

    python -m gluoncv_fp16.bench.grad_scale CKPT [--images 8] [--scales 0,2,4,6,8]
"""
import argparse
import math
import sys

import mxnet as mx
import numpy as np
from mxnet import gluon

__all__ = ['gradient_error_by_scale', 'main']


def _net(name, classes, weights, data_shape, origin):
    from ..checkpoint import load_params_into
    from ..model_zoo import get_model
    net = get_model(name, classes=classes, pretrained_base=False)
    net.initialize(ctx=[mx.cpu()])
    net(mx.nd.zeros((1, 3, data_shape, data_shape)))
    load_params_into(net, weights, origin=origin)
    net.hybridize()
    return net


def gradient_error_by_scale(ckpt, images=8, exponents=(0, 2, 4, 6, 8), seed=7):
    """Rows ``{'scale', 'rel_l2', 'median_tensor', 'worst_tensor', 'flushed'}`` (a row
    with ``'overflow': True`` where FP16 is not finite at that scale)."""
    from ..model_zoo import get_model
    from ..precision.policy import FULL_PRECISION, get_policy
    from ..train.build import build_data
    from ..train.checkpoint import load_run_state
    from ..train.config import dataset_config
    from ..train.precision_check import step_gradients
    from ..train.self_check import check_batch
    state = load_run_state(ckpt)
    model, config = state.meta['model'], state.meta['config']
    name, classes, shape = model['name'], model['classes'], int(config['data_shape'])
    # the checkpoint's dataset with every flag it recorded (files, folders, classes)
    train_set, _, _ = build_data(dataset_config(config))
    shapes_net = get_model(name, classes=classes, pretrained_base=False,
                           anchors=model.get('anchors'))  # the targets' anchors
    shapes_net.initialize()
    batch = check_batch(train_set, shapes_net, shape, images, seed)
    parts = list(zip(*[gluon.utils.split_and_load(a, [mx.cpu()]) for a in batch]))
    origin = "'{}'".format(ckpt)
    _, ref = step_gradients(_net(name, classes, state.weights, shape, origin), parts,
                            get_policy(FULL_PRECISION), 1.0)
    ref = [g.asnumpy().astype(np.float64) for g in ref]
    half, policy = _net(name, classes, state.weights, shape, origin), get_policy('fp16')
    policy.prepare_net(half)
    half.hybridize()
    rows = []
    for exponent in exponents:
        scale = 2.0 ** exponent
        _, got = step_gradients(half, parts, policy, scale)
        got = [g.asnumpy().astype(np.float64) for g in got]
        if not all(np.isfinite(g).all() for g in got):
            rows.append(dict(scale=scale, overflow=True))
            continue
        per = [np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30) for a, b in zip(ref, got)]
        flushed = np.concatenate([((b == 0) & (a != 0)).ravel() for a, b in zip(ref, got)])
        rows.append(dict(scale=scale, overflow=False, rel_l2=math.sqrt(
            sum(((a - b) ** 2).sum() for a, b in zip(ref, got)) /
            sum((a ** 2).sum() for a in ref)), median_tensor=float(np.median(per)),
            worst_tensor=float(max(per)), flushed=float(flushed.mean())))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('checkpoint')
    p.add_argument('--images', type=int, default=8)
    p.add_argument('--scales', default='0,2,4,6,8', help='loss scales as powers of two')
    args = p.parse_args(argv)
    from ..errors import CheckpointError, ConfigError
    try:
        exponents = [int(e) for e in args.scales.split(',')]
    except ValueError:
        p.error('--scales takes powers of two as integers, like 0,2,4, got {!r}'.format(
            args.scales))
    try:
        rows = gradient_error_by_scale(args.checkpoint, args.images, exponents)
    except (CheckpointError, ConfigError, OSError) as err:  # ConfigError: its recorded data
        print('grad_scale: error: {}'.format(err), file=sys.stderr)
        return 2
    print('| loss scale | rel. L2 error | median per-tensor | worst per-tensor | flushed to 0 |')
    print('|---|---|---|---|---|')
    for r in rows:
        if r['overflow']:
            print('| {:g} | overflow | | | |'.format(r['scale']))
        else:
            print('| {:g} | {:.4f} | {:.4f} | {:.3f} | {:.4f} |'.format(
                r['scale'], r['rel_l2'], r['median_tensor'], r['worst_tensor'], r['flushed']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
