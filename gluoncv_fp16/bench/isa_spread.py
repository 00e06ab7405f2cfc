"""How far the numeric checks move when oneDNN runs other kernels.

oneDNN picks convolution kernels by the CPU's instruction set (``DNNL_MAX_CPU_ISA``
caps it: ``AVX2``, ``AVX512_CORE``, ...). The kernels are all true FP32 but sum in
different orders, so every figure that compares two computations (FP16 vs FP32, two
device layouts) lands somewhere else on another CPU. Capping the instruction set on one
machine shows that spread without a second machine. Each cap runs in a child process
(oneDNN reads the variable once, when it starts).

Two measurements:

* ``self-check``: the start-up self-check's figures (loss error, gradient cosine, norm
  ratio; :mod:`..train.precision_check`) for networks, sizes and device counts, with the
  margin to each threshold;
* ``align``: ``scripts/align_check.py --fp16`` from several seeds (warm starts): the
  FP32 1-vs-2-device error and the FP16-vs-FP32 and FP16 2-vs-1-device update errors.

``python -m gluoncv_fp16.bench.isa_spread self-check|align [options]`` prints one JSON
row per measurement and a markdown table.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

from .machine import cap_env

__all__ = ['self_check_figures', 'run_caps', 'main']

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CAPS = ('default', 'AVX512_CORE', 'AVX2')


def _env(cap):
    """A child's environment: `cap`, this checkout's package, and SyncBN's CPU pool."""
    env = cap_env(cap, dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get('PYTHONPATH')) if p)))
    env.setdefault('MXNET_CPU_TEMP_COPY', '1024')  # SyncBN on several CPU contexts
    return env


def self_check_figures(network, data_shape, num_devices, seed=0):
    """One self-check comparison (FP16 vs FP32) on the synthetic set, as a run with these
    settings would do it at start-up; returns the figures and their margins."""
    import mxnet as mx
    from ..data.datasets import build_datasets
    from ..model_zoo import get_model
    from ..train.precision_check import GRADIENT_TOLERANCE, compare_step
    from ..train.self_check import check_batch, check_images
    with tempfile.TemporaryDirectory() as folder:
        from ..data import generate
        root = generate(os.path.join(folder, 'shapes'), num_train=16, num_val=2, seed=seed)
        train_set, _, classes = build_datasets('synthetic', root=root)
        name = 'yolo3_{}_custom'.format(network)
        async_net = get_model(name, classes=classes, pretrained_base=False)
        async_net.initialize()
        contexts = [mx.cpu(k) for k in range(num_devices)]
        batch = check_batch(train_set, async_net, data_shape,
                            check_images(data_shape, num_devices), seed)
        result = compare_step('fp16', name, dict(classes=classes, pretrained_base=False),
                              contexts, batch)
    min_cos = math.sqrt(1 - GRADIENT_TOLERANCE ** 2)
    return dict(network=network, data_shape=data_shape, devices=num_devices, seed=seed,
                images=result.images, loss_error=result.loss_error,
                loss_tolerance=result.loss_tolerance,
                loss_margin=result.loss_tolerance / max(result.loss_error, 1e-30),
                one_minus_cosine=1 - result.cosine,
                cosine_margin=(1 - min_cos) / max(1 - result.cosine, 1e-30),
                norm_ratio=result.norm_ratio,
                norm_margin=GRADIENT_TOLERANCE / max(abs(result.norm_ratio - 1), 1e-30),
                loss_scale=result.loss_scale, problem=result.problem)


def align_figures(seed, out, steps=10, dataset_root=None):
    """scripts/align_check.py --fp16 from warm start `seed` (in `out`/<cap>); its figures:
    the FP32 1-vs-2-device worst scaled error and the two relative update errors."""
    out = os.path.join(out, os.environ.get('DNNL_MAX_CPU_ISA', 'default'))
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'align_check.py'),
                           '--fp16', '--steps', str(steps), '--seed', str(seed), '--out', out,
                           '--fp16-tol', '1', '--tol', '1'] +
                          (['--dataset-root', dataset_root] if dataset_root else []),
                          capture_output=True, text=True, cwd=ROOT)
    updates = [float(v) for v in re.findall(
        r'update over \d+ trained tensors: \|\|dB - dA\|\| / \|\|dA\|\| = ([0-9.e+-]+)',
        done.stdout)]
    worst = re.findall(r'compared, .* worst max_rel ([0-9.e+-]+)', done.stdout)
    return dict(seed=seed, exit=done.returncode,
                fp32_2dev_vs_1dev=float(worst[0]) if worst else None,
                fp16_vs_fp32=updates[0] if updates else None,
                fp16_2dev_vs_1dev=updates[1] if len(updates) > 1 else None,
                applied=re.findall(r'(\w+): \d+ steps, (\d+) applied', done.stdout),
                tail='' if updates else (done.stdout[-600:] + done.stderr[-600:]))


def _child(argv):
    p = argparse.ArgumentParser()
    p.add_argument('what', choices=['self-check', 'align'])
    p.add_argument('spec')
    args = p.parse_args(argv)
    spec = json.loads(args.spec)
    measure = self_check_figures if args.what == 'self-check' else align_figures
    print('ROW ' + json.dumps(measure(**spec)), flush=True)


def run_caps(what, specs, caps=DEFAULT_CAPS):
    """Run each spec under each cap, one child process at a time; yields result rows."""
    for spec in specs:
        for cap in caps:
            done = subprocess.run(
                [sys.executable, '-m', 'gluoncv_fp16.bench.isa_spread', '_child', what,
                 json.dumps(spec)], capture_output=True, text=True, env=_env(cap), cwd=ROOT)
            rows = [json.loads(l[4:]) for l in done.stdout.splitlines() if l.startswith('ROW ')]
            if not rows:
                yield dict(spec, cap=cap, error=(done.stdout + done.stderr)[-600:])
                continue
            yield dict(rows[0], cap=cap)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == '_child':
        return _child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('what', choices=['self-check', 'align'])
    p.add_argument('--caps', default=','.join(DEFAULT_CAPS),
                   help="oneDNN instruction-set caps ('default' = none)")
    p.add_argument('--networks', default='mobilenet0.25')
    p.add_argument('--data-shapes', default='64')
    p.add_argument('--devices', default='1')
    p.add_argument('--seeds', default='0')
    p.add_argument('--steps', type=int, default=10, help='align: steps per run')
    p.add_argument('--out', default=None, help='align: folder for the runs (default: temp)')
    p.add_argument('--dataset-root', default=None,
                   help='align: the synthetic set to train on (default: the built-in one)')
    args = p.parse_args(argv)
    caps = args.caps.split(',')
    seeds = [int(s) for s in args.seeds.split(',')]
    if args.what == 'self-check':
        specs = [dict(network=n, data_shape=int(s), num_devices=int(d), seed=seed)
                 for n in args.networks.split(',') for s in args.data_shapes.split(',')
                 for d in args.devices.split(',') for seed in seeds]
    else:
        out = args.out or tempfile.mkdtemp(prefix='align_spread_')
        specs = [dict(seed=seed, out=os.path.join(out, 'seed{}'.format(seed)),
                      steps=args.steps, dataset_root=args.dataset_root) for seed in seeds]
    for row in run_caps(args.what, specs, caps):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
