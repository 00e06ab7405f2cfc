"""Does one FP16 or AMP training step agree with FP32 on these devices?

One batch, forward and backward, first in FP32 and then in the chosen mode, from the
same weights, on the given contexts. Compared: the four YOLOv3 losses and the gradient
of all trained tensors together (cosine and norm ratio), against the tolerances derived
in the docs:

* losses: ``TOL = 2 sqrt(L) u`` (docs/model_zoo.md, "FP16 vs FP32 agreement"), with
  u = 2**-11 and L the convolutions on the network's deepest path;
* gradient: relative L2 error 3e-2 (docs/distributed.md, "FP16 vs FP32: what is compared,
  and the tolerance"), i.e. cosine >= sqrt(1 - 0.03**2) and norm ratio within 1 +- 0.03.

Why the check uses its own copy of the network, with its own weights: at a fresh
initialisation, YOLOv3 with batch-statistics BatchNorm is chaotic. Rounding the input to
FP16 alone turns the FP32 gradient by a cosine of 0.14 (measured, yolo3_mobilenet0.25,
64 px), so no tolerance could tell FP16 error from noise. The copy normalises with its
(identity) running statistics and draws variance-preserving weights from a private
generator (He for MobileNet, LeCun for Darknet's residual chain), the regime in which
the documented tolerances were derived. It never touches the run's network, MXNet's
random state, or NumPy's and Python's global generators.

MXNet AMP patches operators process-wide and cannot be undone, so the AMP comparison
runs in a child process (FP32 first, then ``amp.init``); the training process switches
AMP on only afterwards (see :mod:`.self_check`).
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

from ..model_zoo import get_model
from ..precision.policy import activate_amp, amp_active, get_policy

__all__ = ['Agreement', 'check_agreement', 'compare_step', 'step_gradients', 'loss_tolerance',
           'conv_depth', 'GRADIENT_TOLERANCE', 'UNIT_ROUNDOFF']

UNIT_ROUNDOFF = 2.0 ** -11
GRADIENT_TOLERANCE = 3e-2          # docs/distributed.md
_FP16_MAX = 65504.0
_DYNAMIC_BACKOFFS = 2              # halvings tried when a dynamic scale overflows
_WEIGHT_SEED = 20160               # the check's own weights: same on every run


@dataclass(frozen=True)
class Agreement:
    """Figures of one comparison; `problem` is '' when the mode agrees with FP32."""
    mode: str
    devices: str
    images: int
    data_shape: int
    loss_error: float
    loss_tolerance: float
    cosine: float
    norm_ratio: float
    loss_scale: float
    seconds: float
    problem: str = ''

    @property
    def ok(self):
        return not self.problem

    @property
    def min_cosine(self):
        return math.sqrt(1.0 - GRADIENT_TOLERANCE ** 2)

    def figures(self):
        """The numbers (those that could be computed), for a log line or a report row."""
        parts = []
        if math.isfinite(self.loss_error):
            parts.append('loss error {:.1e} (tolerance {:.1e})'.format(
                self.loss_error, self.loss_tolerance))
        if math.isfinite(self.cosine):
            parts.append('gradient cosine {:.6f} (>= {:.6f}), norm ratio {:.4f} '
                         '(1 +- {:g})'.format(self.cosine, self.min_cosine, self.norm_ratio,
                                              GRADIENT_TOLERANCE))
        if math.isfinite(self.loss_scale):
            parts.append('loss scale {:g}'.format(self.loss_scale))
        return ', '.join(parts)

    def to_dict(self):
        return asdict(self)


def conv_depth(net):
    """Convolutions on YOLOv3's deepest path (backbone, detection blocks, transitions,
    prediction conv); counts a few too many, which only loosens the tolerance."""
    count = [0]

    def visit(block):
        count[0] += isinstance(block, nn.Conv2D)
    for part in (net.stages, net.yolo_blocks, net.transitions):
        part.apply(visit)
    return count[0] + 1


def loss_tolerance(depth):
    """docs/model_zoo.md: TOL = 2 sqrt(L) u."""
    return 2.0 * math.sqrt(depth) * UNIT_ROUNDOFF


def build_check_net(model_name, model_kwargs, contexts, data_shape):
    """The run's architecture with identity-statistics BatchNorm and the check's own
    variance-preserving weights, initialised on `contexts`, hybridized, FP32."""
    kwargs = {k: v for k, v in dict(model_kwargs).items() if k not in ('norm_layer',)}
    kwargs.update(pretrained_base=False, norm_kwargs={'use_global_stats': True})
    with mx.name.NameManager():  # leave the run's layer-name counters where they are
        net = get_model(model_name, **kwargs)
    net.initialize(mx.init.Zero(), ctx=contexts)  # Zero draws nothing from MXNet's RNG
    with autograd.pause():
        net(mx.nd.zeros((1, 3, data_shape, data_shape), ctx=contexts[0]))  # shapes
    gain = 1.0 if 'darknet' in model_name else 2.0  # LeCun for residual sums, He else
    generator = np.random.default_rng(_WEIGHT_SEED)

    def draw(block):
        if isinstance(block, (nn.Conv2D, nn.Dense)):
            shape = block.weight.shape
            std = math.sqrt(gain / int(np.prod(shape[1:])))
            block.weight.set_data(mx.nd.array(
                generator.standard_normal(shape, dtype=np.float32) * std))
    net.apply(draw)
    net.hybridize()
    return net


def _trained(net):
    return [p for p in net.collect_params().values() if p.grad_req != 'null']


def step_gradients(net, parts, policy, scale):
    """One forward and backward of `net` on `parts` with the loss multiplied by `scale`:
    the check's measurement, also used by :mod:`gluoncv_fp16.bench.grad_scale`.

    Parameters
    ----------
    net : mxnet.gluon.HybridBlock
        A YOLOv3 network prepared for `policy`, in training mode (returns its 4 losses).
    parts : list of tuple
        Per device ``(image, gt_boxes, *targets)`` NDArrays (``split_and_load``).
    policy : PrecisionPolicy
        Casts the images to the compute dtype.
    scale : float
        The loss scale.

    Returns
    -------
    losses : list of 4 float
        The loss terms summed over devices (unscaled).
    grads : list of NDArray
        FP32 gradient of every trained parameter on the first device, summed over
        devices and divided by `scale`.
    """
    with autograd.record():
        per_device = [net(policy.cast_input(x), gt, *targets) for x, gt, *targets in parts]
        totals = [mx.nd.add_n(*losses) * scale for losses in per_device]
    autograd.backward(totals)
    losses = [sum(float(part[k].sum().asscalar()) for part in per_device) for k in range(4)]
    home = parts[0][0].context
    grads = []
    for param in _trained(net):
        grad = param.list_grad()[0].astype('float32')
        for other in param.list_grad()[1:]:
            grad += other.as_in_context(home).astype('float32')
        grads.append(grad / scale)
    return losses, grads


def _gradient_sums(ref, got):
    """(|ref|^2, |got|^2, ref.got) summed over all tensors, read with one sync."""
    sums = [mx.nd.concat(*[mx.nd.sum(a * b).reshape((1,)) for a, b in pairs], dim=0)
            for pairs in (zip(ref, ref), zip(got, got), zip(ref, got))]
    return [float(np.sum(s.asnumpy().astype(np.float64))) for s in sums]


def _first_scale(loss_scale, ref_grads):
    """The scale to try first: a fixed one as given; a dynamic one where a dynamic
    scaler settles, the power of two that keeps the largest gradient below FP16's max
    with 16x headroom."""
    if loss_scale != 'dynamic':
        return float(loss_scale), 1
    peaks = mx.nd.concat(*[g.abs().max().reshape((1,)) for g in ref_grads], dim=0)
    peak = float(peaks.max().asscalar()) or 1.0
    exponent = math.floor(math.log2(_FP16_MAX / 16.0 / peak))
    return 2.0 ** min(max(exponent, -14), 24), 1 + _DYNAMIC_BACKOFFS


def _judge(ref_losses, losses, sums, tol):
    """(loss error, cosine, norm ratio, problem) against the loss tolerance `tol` and
    GRADIENT_TOLERANCE."""
    loss_error = max(abs(a - b) for a, b in zip(losses, ref_losses)) / abs(sum(ref_losses))
    ref_sq, got_sq, dot = sums
    cosine = dot / math.sqrt(ref_sq * got_sq) if ref_sq > 0 and got_sq > 0 else 0.0
    ratio = math.sqrt(got_sq / ref_sq) if ref_sq > 0 else float('nan')
    problems = []
    if not loss_error <= tol:
        problems.append('losses differ by {:.1e} of the FP32 total (> {:.1e})'.format(
            loss_error, tol))
    if not (cosine >= math.sqrt(1 - GRADIENT_TOLERANCE ** 2) and
            abs(ratio - 1) <= GRADIENT_TOLERANCE):
        problems.append('gradients differ (cosine {:.6f}, norm ratio {:.4f})'.format(
            cosine, ratio))
    return loss_error, cosine, ratio, '; '.join(problems)


def _overflow_problem(mode, finite_losses, scale, loss_scale):
    if not finite_losses:
        return '{} losses are not finite (the forward pass overflows)'.format(mode)
    return '{} gradients are not finite at loss scale {:g}{}'.format(
        mode, scale, ' (a fixed scale that overflows; try --loss-scale dynamic)'
        if loss_scale != 'dynamic' else '')


def _modestep_gradients(net, parts, policy, ref_grads, loss_scale):
    """The chosen mode's step: (losses, gradient sums, loss scale used, overflow problem)."""
    scale, tries = _first_scale(loss_scale, ref_grads)
    for attempt in range(tries):
        losses, grads = step_gradients(net, parts, policy, scale)
        sums = _gradient_sums(ref_grads, grads)
        finite_losses = bool(np.all(np.isfinite(losses)))
        if finite_losses and all(math.isfinite(s) for s in sums):
            return losses, sums, scale, ''
        if not finite_losses or attempt + 1 == tries:  # a smaller scale cannot help
            return losses, sums, scale, _overflow_problem(policy.name, finite_losses, scale,
                                                          loss_scale)
        scale /= 2.0
    raise AssertionError('unreachable')


def compare_step(mode, model_name, model_kwargs, contexts, batch, loss_scale='dynamic',
                 amp_init=None):
    """Compare one step of `mode` ('fp16' | 'amp') with FP32, in this process.

    Parameters
    ----------
    batch : tuple of NDArray
        ``(image (B, 3, S, S), gt_boxes (B, M, 4), obj, centers, scales, weights, clas)``
        as the training loader yields it (float32).
    loss_scale : 'dynamic' or float
        A fixed scale is used as is (so one that overflows is reported); a dynamic one
        starts where a dynamic scaler settles and halves up to twice on overflow.
    amp_init : dict, optional
        Keyword arguments of ``mxnet.contrib.amp.init`` (mode 'amp' only). AMP stays on
        in this process afterwards: call it for 'amp' only in a process of its own.
    """
    if mode not in ('fp16', 'amp'):
        raise ValueError("mode must be 'fp16' or 'amp', got {!r}".format(mode))
    if amp_active():
        raise RuntimeError('MXNet AMP is already on in this process: no FP32 reference '
                           'can be computed here')
    start = time.perf_counter()
    data_shape = int(batch[0].shape[-1])
    net = build_check_net(model_name, model_kwargs, contexts, data_shape)
    depth = conv_depth(net)
    parts = list(zip(*[gluon.utils.split_and_load(a, contexts, even_split=False)
                       for a in batch]))
    ref_losses, ref_grads = step_gradients(net, parts, get_policy('fp32'), 1.0)
    figures = dict(mode=mode, devices=','.join(str(c) for c in contexts),
                   images=int(batch[0].shape[0]), data_shape=data_shape,
                   loss_tolerance=loss_tolerance(depth))
    nan = dict(loss_error=float('nan'), cosine=float('nan'), norm_ratio=float('nan'))
    if not (np.all(np.isfinite(ref_losses)) and
            math.isfinite(_gradient_sums(ref_grads, ref_grads)[0])):
        return Agreement(loss_scale=1.0, seconds=time.perf_counter() - start,
                         problem='the FP32 reference step itself is not finite',
                         **nan, **figures)
    policy = get_policy(mode)
    if policy.uses_amp:
        activate_amp(policy, **(amp_init or {}))
    policy.prepare_net(net)
    net.hybridize()  # trace again: FP16 weights, or AMP's patched operators
    losses, sums, scale, problem = _modestep_gradients(net, parts, policy, ref_grads, loss_scale)
    if problem:
        return Agreement(loss_scale=scale, seconds=time.perf_counter() - start,
                         problem=problem, **nan, **figures)
    loss_error, cosine, ratio, problem = _judge(ref_losses, losses, sums,
                                                figures['loss_tolerance'])
    mx.nd.waitall()
    return Agreement(loss_error=loss_error, cosine=cosine, norm_ratio=ratio,
                     loss_scale=scale, problem=problem, seconds=time.perf_counter() - start,
                     **figures)


def check_agreement(mode, model_name, model_kwargs, contexts, batch, loss_scale='dynamic',
                    amp_init=None, timeout=900):
    """:func:`compare_step`, with AMP in a child process so this one stays AMP-free.

    Returns an `Agreement`; a child that fails or times out comes back as one whose
    `problem` says so.
    """
    if mode != 'amp':
        return compare_step(mode, model_name, model_kwargs, contexts, batch, loss_scale)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='gluoncv_fp16_check_') as folder:
        np.savez(os.path.join(folder, 'batch.npz'), *[a.asnumpy() for a in batch])
        spec = dict(mode=mode, model_name=model_name, model_kwargs=dict(model_kwargs),
                    contexts=['{}:{}'.format(c.device_type, c.device_id) for c in contexts],
                    loss_scale=loss_scale,
                    amp_init=amp_init or {}, batch=os.path.join(folder, 'batch.npz'))
        with open(os.path.join(folder, 'spec.json'), 'w') as f:
            json.dump(spec, f)
        problem, result = _run_child(os.path.join(folder, 'spec.json'), timeout)
    if result is not None:
        return Agreement(**dict(result, seconds=time.perf_counter() - start))
    return Agreement(mode=mode, devices=','.join(str(c) for c in contexts),
                     images=int(batch[0].shape[0]), data_shape=int(batch[0].shape[-1]),
                     loss_error=float('nan'), loss_tolerance=float('nan'),
                     cosine=float('nan'), norm_ratio=float('nan'), loss_scale=float('nan'),
                     seconds=time.perf_counter() - start, problem=problem)


def _run_child(spec_path, timeout):
    """(problem, result dict or None) of ``python -m gluoncv_fp16.train.precision_check``."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get('PYTHONPATH')) if p))
    try:
        out = subprocess.run([sys.executable, '-m', 'gluoncv_fp16.train.precision_check',
                              spec_path], capture_output=True, text=True, timeout=timeout,
                             env=env, check=False)
    except subprocess.TimeoutExpired:
        return 'the AMP check process did not finish within {} s'.format(timeout), None
    for line in out.stdout.splitlines():
        if line.startswith('AGREEMENT '):
            return '', json.loads(line[len('AGREEMENT '):])
    lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
    return 'the AMP check process failed (exit {}): {}'.format(
        out.returncode, lines[-1] if lines else 'no output'), None


def _child_main(spec_path):
    from .devices import make_contexts
    with open(spec_path) as f:
        spec = json.load(f)
    with np.load(spec['batch']) as arrays:
        batch = tuple(mx.nd.array(arrays['arr_{}'.format(i)], dtype='float32')
                      for i in range(len(arrays.files)))
    result = compare_step(spec['mode'], spec['model_name'], spec['model_kwargs'],
                          make_contexts(spec['contexts']), batch, spec['loss_scale'],
                          spec['amp_init'])
    print('AGREEMENT ' + json.dumps(result.to_dict()))
    return 0


if __name__ == '__main__':
    sys.exit(_child_main(sys.argv[1]))
