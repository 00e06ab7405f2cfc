"""How much an FP16 gradient loses at each loss scale, from a checkpoint's weights.

A dynamic loss scale that settles low (YOLOv3's summed loss drives it to about 1 in the
first steps, and it grows back only after 1000 clean steps) could flush small FP16
gradients to zero late in a run. This measures it: one training batch of the
checkpoint's own dataset, the gradient computed in FP32 and in FP16 at several loss
scales from the checkpoint's FP32 weights, and per scale the relative L2 error of the
FP16 gradient, its median and worst per-tensor error, and the fraction of gradient
values that FP16 flushed to zero where FP32 has them non-zero.

With ``--noise`` it also sets FP16's error against SGD's own noise: the FP16 gradient's
relative error on one batch beside the FP32 gradient's change from that batch to another
of the same size, the projection of the FP16 error on the FP32 gradient (does FP16
shrink or grow the gradient systematically?), and the tensors with the largest FP16
error, each with its own batch-to-batch change (:func:`fp16_error_against_batch_noise`).

    python -m gluoncv_fp16.bench.grad_scale CKPT [--images 8] [--scales 0,2,4,6,8] [--noise]
"""
import argparse
import math
import sys

import mxnet as mx
import numpy as np
from mxnet import gluon

__all__ = ['gradient_error_by_scale', 'fp16_error_against_batch_noise', 'noise_table',
           'relative_difference', 'projection_on', 'main']


def _net(name, classes, weights, data_shape, origin):
    from ..checkpoint import load_params_into
    from ..model_zoo import get_model
    net = get_model(name, classes=classes, pretrained_base=False)
    net.initialize(ctx=[mx.cpu()])
    net(mx.nd.zeros((1, 3, data_shape, data_shape)))
    load_params_into(net, weights, origin=origin)
    net.hybridize()
    return net


class _Setup:
    """A checkpoint's network name, classes, data shape, FP32 weights and training set,
    and the batches both measurements draw from it."""

    def __init__(self, ckpt):
        from ..model_zoo import get_model
        from ..train.build import build_data
        from ..train.checkpoint import load_run_state
        from ..train.config import dataset_config
        state = load_run_state(ckpt)
        model, config = state.meta['model'], state.meta['config']
        self.name, self.classes = model['name'], model['classes']
        self.shape, self.weights = int(config['data_shape']), state.weights
        self.origin = "'{}'".format(ckpt)
        # the checkpoint's dataset with every flag it recorded (files, folders, classes)
        self.train_set, _, _ = build_data(dataset_config(config))
        self._shapes_net = get_model(self.name, classes=self.classes, pretrained_base=False,
                                     anchors=model.get('anchors'))  # the targets' anchors
        self._shapes_net.initialize()

    def batch(self, images, seed):
        """Per device parts of the first `images` samples of the epoch `seed` shuffles."""
        from ..train.self_check import check_batch
        batch = check_batch(self.train_set, self._shapes_net, self.shape, images, seed)
        return list(zip(*[gluon.utils.split_and_load(a, [mx.cpu()]) for a in batch]))

    def net(self, precision=None):
        """The network at the checkpoint's weights; prepared for FP16 when
        `precision` is 'fp16'."""
        from ..precision.policy import FULL_PRECISION, get_policy
        policy = get_policy(precision or FULL_PRECISION)
        net = _net(self.name, self.classes, self.weights, self.shape, self.origin)
        if precision and precision != FULL_PRECISION:
            policy.prepare_net(net)
            net.hybridize()
        return net, policy

    def gradients(self, net, policy, parts, scale=1.0):
        """float64 numpy gradient of every trained parameter, in ``collect_params`` order."""
        from ..train.precision_check import step_gradients
        _, grads = step_gradients(net, parts, policy, scale)
        return [g.asnumpy().astype(np.float64) for g in grads]


def gradient_error_by_scale(ckpt, images=8, exponents=(0, 2, 4, 6, 8), seed=7):
    """Rows ``{'scale', 'rel_l2', 'median_tensor', 'worst_tensor', 'flushed'}`` (a row
    with ``'overflow': True`` where FP16 is not finite at that scale)."""
    setup = _Setup(ckpt)
    parts = setup.batch(images, seed)
    ref = setup.gradients(*setup.net(), parts)
    half, policy = setup.net('fp16')
    rows = []
    for exponent in exponents:
        scale = 2.0 ** exponent
        got = setup.gradients(half, policy, parts, scale)
        if not all(np.isfinite(g).all() for g in got):
            rows.append(dict(scale=scale, overflow=True))
            continue
        per = [np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30) for a, b in zip(ref, got)]
        flushed = np.concatenate([((b == 0) & (a != 0)).ravel() for a, b in zip(ref, got)])
        rows.append(dict(scale=scale, overflow=False, rel_l2=relative_difference(ref, got),
                         median_tensor=float(np.median(per)),
                         worst_tensor=float(max(per)), flushed=float(flushed.mean())))
    return rows


def _squared(tensors):
    return sum(float((t ** 2).sum()) for t in tensors)


def relative_difference(ref, other):
    """|other - ref| / |ref| over all tensors together (L2)."""
    return math.sqrt(_squared([b - a for a, b in zip(ref, other)]) /
                     max(_squared(ref), 1e-300))


def projection_on(ref, other):
    """<other - ref, ref> / |ref|^2: the part of the difference along `ref` (negative:
    `other` is `ref` shrunk)."""
    dot = sum(float(np.dot((b - a).ravel(), a.ravel())) for a, b in zip(ref, other))
    return dot / max(_squared(ref), 1e-300)


def fp16_error_against_batch_noise(ckpt, images=8, seeds=(7, 8), scale=1.0, worst=10):
    """FP16's gradient error next to the noise SGD lives with, at a checkpoint's weights.

    A difference between FP16 and FP32 training matters only if FP16's gradient error is
    not small against what another batch of the same size changes anyway. At the
    checkpoint's FP32 weights: the FP32 gradient on batch A (the first `images` samples
    of the epoch seed ``seeds[0]`` shuffles) and on batch B (``seeds[1]``), and the FP16
    gradient on batch A at loss scale `scale`.

    Returns
    -------
    dict
        ``fp16_error``: |g16(A) - g32(A)| / |g32(A)| over all tensors; ``batch_noise``:
        |g32(B) - g32(A)| / |g32(A)|; ``bias``: the projection of g16(A) - g32(A) on
        g32(A) relative to |g32(A)|^2 (negative: FP16 shrinks the gradient, positive:
        grows it); ``tensors``: the `worst` tensors with the largest FP16 error, each
        ``{'name', 'fp16_error', 'batch_noise', 'bias', 'norm'}`` (relative to that
        tensor's FP32 gradient on A); ``images``, ``seeds``, ``scale``; ``overflow`` True
        (and no figures) when the FP16 gradient is not finite at `scale`.
    """
    from ..model_zoo.params import named_params
    setup = _Setup(ckpt)
    first, second = (setup.batch(images, s) for s in seeds)
    net, policy = setup.net()
    ref = setup.gradients(net, policy, first)
    other = setup.gradients(net, policy, second)
    half, half_policy = setup.net('fp16')
    got = setup.gradients(half, half_policy, first, scale)
    out = {'images': images, 'seeds': list(seeds), 'scale': scale, 'overflow': False}
    if not all(np.isfinite(g).all() for g in got):
        out['overflow'] = True
        return out
    names = {id(p): n for n, p in named_params(net).items()}
    trained = [names[id(p)] for p in net.collect_params().values() if p.grad_req != 'null']
    rows = []
    for name, a, b, c in zip(trained, ref, got, other):
        rows.append({'name': name, 'fp16_error': relative_difference([a], [b]),
                     'batch_noise': relative_difference([a], [c]), 'bias': projection_on([a], [b]),
                     'norm': math.sqrt(_squared([a]))})
    rows.sort(key=lambda r: -r['fp16_error'])
    out.update(fp16_error=relative_difference(ref, got), batch_noise=relative_difference(ref, other),
               bias=projection_on(ref, got), tensors=rows[:worst])
    return out


def noise_table(found):
    """:func:`fp16_error_against_batch_noise`'s result as Markdown lines."""
    if found['overflow']:
        return ['FP16 gradient not finite at loss scale {:g}'.format(found['scale'])]
    lines = ['| gradient | FP16 error (batch A) | batch A to batch B, FP32 | bias of FP16 '
             '(projection on FP32) | FP32 norm |', '|---|---|---|---|---|',
             '| all tensors | {:.4f} | {:.4f} | {:+.5f} | |'.format(
                 found['fp16_error'], found['batch_noise'], found['bias'])]
    lines += ['| {} | {:.4f} | {:.4f} | {:+.5f} | {:.3e} |'.format(
        r['name'], r['fp16_error'], r['batch_noise'], r['bias'], r['norm'])
        for r in found['tensors']]
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('checkpoint')
    p.add_argument('--images', type=int, default=8)
    p.add_argument('--scales', default='0,2,4,6,8', help='loss scales as powers of two')
    p.add_argument('--noise', action='store_true',
                   help='also FP16 error (loss scale 1) against FP32 batch-to-batch noise, '
                        'bias, and the 10 tensors with the largest FP16 error')
    args = p.parse_args(argv)
    from ..errors import CheckpointError, ConfigError
    try:
        exponents = [int(e) for e in args.scales.split(',')]
    except ValueError:
        p.error('--scales takes powers of two as integers, like 0,2,4, got {!r}'.format(
            args.scales))
    try:
        rows = gradient_error_by_scale(args.checkpoint, args.images, exponents)
        noise = fp16_error_against_batch_noise(args.checkpoint, args.images) \
            if args.noise else None
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
    if noise is not None:
        print()
        print('FP16 (loss scale {:g}) against FP32 on batch A; FP32 from batch A to batch B '
              '({} images each, epoch seeds {} and {}); relative L2 per row'.format(
                  noise['scale'], noise['images'], *noise['seeds']))
        print('\n'.join(noise_table(noise)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
