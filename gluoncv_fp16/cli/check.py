"""Check a machine before training on it; writes a markdown report to read or attach to a bug.

The device report: ``gluoncv-fp16-check``, ``python -m gluoncv_fp16.cli.check`` or
``scripts/device_check.py``. Run it first on a new GPU machine:

    gluoncv-fp16-check                      # every visible GPU, else the CPU
    gluoncv-fp16-check --gpus 0,1 --out report.md

The report has, per device, the MXNet build flags (CUDA, cuDNN, NCCL, dist kvstore),
compute capability, memory and an FP32/FP16 probe; FP16 and AMP agreement with FP32 (the
training self-check, on one batch); a short throughput and peak-memory measurement per
mode (scripts/benchmark.py's harness, :mod:`gluoncv_fp16.bench.mode`, one process per
mode); with several devices a kvstore all-reduce check; and a verdict per mode: use, or
do not use and why.
"""
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional, Tuple

from ..data.options import data_side_problem
from ..model_zoo.zoo import BACKBONES
from ..train.config import parse_contexts
from ..utils.options import flag, rule, setting
from .command import Command

__all__ = ['CheckSettings', 'COMMAND', 'main', 'check']

MODES = ('fp32', 'fp16', 'amp')
FLAGS = ('CUDA', 'CUDNN', 'NCCL', 'DIST_KVSTORE', 'MKLDNN')
DEVICES, MEASURE = 'devices', 'measurement'


def _devices(gpus, ctx):
    """Context names from --ctx / --gpus; None when neither is given (every visible GPU,
    else the CPU)."""
    if ctx or gpus is not None:
        return parse_contexts(gpus if gpus is not None else '', ctx)
    return None


@dataclass(frozen=True)
class CheckSettings:
    """The device report's settings, each declared with its flag."""
    devices: Optional[Tuple[str, ...]] = setting(
        flag('--gpus', group=DEVICES,
             help="GPU ids like 0,1 (default: all visible, else the CPU; '' = CPU)"),
        flag('--ctx', group=DEVICES, help='explicit devices, e.g. cpu:0,cpu:1'),
        convert=_devices)
    network: Optional[str] = setting(
        flag('--network', group=MEASURE,
             help='darknet53, mobilenet1.0 or mobilenet0.25 (default: darknet53 on GPUs, '
                  'mobilenet0.25 on CPU)'),
        check=rule(lambda v: v is None or v in BACKBONES,
                   lambda v: '--network {!r}: choose one of {}'.format(v, list(BACKBONES))))
    data_shape: Optional[int] = setting(
        flag('--data-shape', group=MEASURE, type=int,
             help='input size (default: 416 on GPUs, 128 on CPU)'),
        check=lambda v: data_side_problem(v, optional=True))
    batch_size: Optional[int] = setting(
        flag('--batch-size', group=MEASURE, type=int,
             help='benchmark batch (default: 8 per GPU, 4 on CPU)'),
        check=rule(lambda v: v is None or v > 0, '--batch-size must be positive, got {}'))
    warmup: int = setting(
        flag('--warmup', group=MEASURE, default=2, help='untimed iterations per mode'),
        check=rule(lambda v: v >= 0, '--warmup must be >= 0, got {}'))
    iters: int = setting(
        flag('--iters', group=MEASURE, default=5, help='timed iterations per repeat'),
        check=rule(lambda v: v > 0, '--iters must be positive, got {}'))
    repeats: int = setting(
        flag('--repeats', group=MEASURE, default=3, help='timed repeats per mode'),
        check=rule(lambda v: v > 0, '--repeats must be positive, got {}'))
    benchmark: bool = setting(
        flag('--no-benchmark', group=MEASURE, switch=True, help='skip the throughput rows'),
        convert=lambda off: not off)
    out: str = setting(
        flag('--out', group=MEASURE, default='device_report.md', help='markdown file to write'))


def choose_devices(settings):
    """Context names ('gpu:0', ...) from --ctx / --gpus, or every visible GPU, or cpu:0."""
    import mxnet as mx
    if settings.devices is not None:
        return settings.devices
    return tuple('gpu:{}'.format(i) for i in range(mx.context.num_gpus())) or ('cpu:0',)


def build_flags():
    import mxnet as mx
    features = mx.runtime.Features()
    return {flag: features.is_enabled(flag) for flag in FLAGS}


def cpu_name():
    """'<model name>, N cores' from /proc/cpuinfo (Linux), else the machine type."""
    model = platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next((line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')), model)
    except OSError:
        pass
    return '{}, {} cores'.format(model, os.cpu_count())


def device_rows(contexts):
    """Per device: name, compute capability, memory, wheel code, FP32 and FP16 probes."""
    import mxnet as mx
    from ..train.config import ConfigError
    from ..train.devices import (compute_capability, gpu_name, probe_device,
                                            wheel_runs_on)
    rows = []
    for ctx in contexts:
        row = {'device': str(ctx), 'name': gpu_name(ctx) or (
            cpu_name() if ctx.device_type == 'cpu' else 'unknown')}
        capability = compute_capability(ctx)
        row['capability'] = '{}.{}'.format(*capability) if capability else '-'
        row['wheel_code'] = ('yes' if wheel_runs_on(capability) else 'NO') if capability \
            else '-'
        if ctx.device_type == 'gpu':
            try:
                free, total = mx.context.gpu_memory_info(ctx.device_id)
                row['memory'] = '{:.1f} GB ({:.1f} free)'.format(total / 1e9, free / 1e9)
            except mx.base.MXNetError as err:
                row['memory'] = 'n/a ({})'.format(str(err).strip().splitlines()[-1])
        else:
            row['memory'] = '{:.1f} GB RAM'.format(os.sysconf('SC_PAGE_SIZE') *
                                                   os.sysconf('SC_PHYS_PAGES') / 1e9)
        for dtype in ('float32', 'float16'):
            try:
                probe_device(ctx, dtype)
                row[dtype] = 'ok'
            except ConfigError as err:
                row[dtype] = 'FAILS: {}'.format(err)
        rows.append(row)
    return rows


def unavailable_reason(mode, contexts, device_table):
    """Why `mode` cannot run on these devices (None if it can)."""
    from ..precision.policy import get_policy
    from ..train.config import ConfigError
    from ..train.devices import check_devices
    failed = [r for r in device_table if r['float32'] != 'ok' or
              (mode != 'fp32' and r['float16'] != 'ok')]
    if failed:
        key = 'float32' if failed[0]['float32'] != 'ok' else 'float16'
        return failed[0][key]
    try:
        check_devices(contexts, get_policy(mode))
    except ConfigError as err:
        return str(err)
    return None


def agreement(mode, network, shape, contexts, workdir):
    """The training self-check for `mode` on one batch of a generated synthetic set."""
    from ..data import generate
    from ..data.datasets import build_datasets
    from ..model_zoo import get_model
    from ..train.precision_check import check_agreement
    from ..train.self_check import check_batch, check_images
    images = check_images(shape, len(contexts))
    root = os.path.join(workdir, 'VOCcheck')
    if not os.path.isdir(root):
        generate(root, num_train=images, num_val=1, width=shape, height=shape, seed=0)
    train_set, _, classes = build_datasets('synthetic', root=root)
    name = 'yolo3_{}_custom'.format(network)
    shapes_net = get_model(name, pretrained_base=False, classes=classes)
    shapes_net.initialize()
    batch = check_batch(train_set, shapes_net, shape, images, seed=0)
    return check_agreement(mode, name, {'classes': classes}, contexts, batch)


def throughput(mode, network, shape, batch, names, settings):
    """scripts/benchmark.py's measurement of one mode (its own process)."""
    from ..bench.mode import run_mode
    return run_mode(mode, network, shape, batch, ','.join(names), settings.warmup,
                    settings.iters, settings.repeats)


def allreduce_check(contexts, flags):
    """Every device pushes (its index + 1); every device must pull the sum. Per kvstore
    type the build has, in FP32 and FP16, with the time of one 4 MB all-reduce."""
    import mxnet as mx
    import numpy as np
    want = len(contexts) * (len(contexts) + 1) / 2.0
    rows = []
    for kind in ['device'] + (['nccl'] if flags.get('NCCL') else []):
        for dtype in ('float32', 'float16'):
            try:
                kv = mx.kv.create(kind)
                shape = (1 << 20,) if dtype == 'float32' else (1 << 21,)
                kv.init(0, mx.nd.zeros(shape, ctx=contexts[0], dtype=dtype))
                values = [mx.nd.full(shape, i + 1, ctx=c, dtype=dtype)
                          for i, c in enumerate(contexts)]
                outs = [mx.nd.zeros(shape, ctx=c, dtype=dtype) for c in contexts]
                start = time.perf_counter()
                kv.push(0, values)
                kv.pull(0, out=outs)
                got = [o.asnumpy() for o in outs]
                ms = (time.perf_counter() - start) * 1e3
                ok = all(np.all(g == want) for g in got)
                rows.append((kind, dtype, 'ok' if ok else 'WRONG: got {} instead of {}'.format(
                    sorted({float(v) for g in got for v in np.unique(g)}), want),
                             '{:.1f} ms'.format(ms)))
            except mx.base.MXNetError as err:
                rows.append((kind, dtype, 'FAILS: ' + str(err).strip().splitlines()[-1], '-'))
    return rows


def verdict(mode, reason, check, bench, base, on_gpu):
    """'use' / 'do not use' / 'not available', and why, in one cell."""
    if reason:
        return 'not available: ' + reason
    if mode != 'fp32' and check is not None and not check.ok:
        return 'do not use: disagrees with FP32 ({})'.format(check.problem)
    speed = None
    if bench and base and not bench.get('error') and not base.get('error'):
        speed = bench['images_per_sec'] / base['images_per_sec']
    if mode == 'fp32':
        return 'use: the reference; every probe passed'
    if not on_gpu:
        return ('do not use for speed: agrees with FP32, but {} on CPU (the CPU half path '
                'exists to test FP16 training without a GPU)'.format(
                    'runs at {:.2f}x FP32 speed'.format(speed) if speed else
                    'it is slower than FP32 (not measured here: --no-benchmark)'))
    if speed is None:
        return 'use: agrees with FP32 (throughput not measured)'
    if speed < 1.05:
        return 'do not use for speed: agrees with FP32 but {:.2f}x FP32 speed here'.format(
            speed)
    return 'use: agrees with FP32, {:.2f}x FP32 speed'.format(speed)


def _table(head, rows):
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    lines += ['| ' + ' | '.join(str(c).replace('|', '/') for c in row) + ' |' for row in rows]
    return lines


def render(info):
    """The report as markdown text."""
    out = ['# Device check', '',
           '{} - MXNet {}, GluonCV {}, Python {}, devices {}{}'.format(
               info['date'], info['mxnet'], info['gluoncv'], platform.python_version(),
               ','.join(info['names']), '' if info['visible'] is None else
               ' (CUDA_VISIBLE_DEVICES={})'.format(info['visible'])), '',
           '## MXNet build', '']
    out += _table(FLAGS, [['yes' if info['flags'][f] else 'no' for f in FLAGS]])
    out += ['', '## Devices', '']
    out += _table(('device', 'name', 'compute capability', 'pip-wheel code', 'memory',
                   'FP32 probe', 'FP16 probe'),
                  [[r['device'], r['name'], r['capability'], r['wheel_code'], r['memory'],
                    r['float32'], r['float16']] for r in info['devices']])
    out += ['', '## Agreement with FP32 (the training self-check: {} at {} px)'.format(
        info['network'], info['shape']), '']
    rows = []
    for mode in ('fp16', 'amp'):
        check = info['checks'].get(mode)
        if check is None:
            rows.append([info['labels'][mode], 'not run: ' + info['reasons'][mode], '', ''])
        else:
            rows.append([info['labels'][mode], 'agrees' if check.ok else 'DISAGREES: ' +
                         check.problem, check.figures(), '{:.1f}'.format(check.seconds)])
    out += _table(('mode', 'result', 'figures', 'seconds'), rows)
    out += ['', '## Throughput and peak memory (scripts/benchmark.py harness)', '']
    if info['bench'] is None:
        out.append('Not measured (--no-benchmark).')
    else:
        base = info['bench'].get('fp32') or {}
        rows = []
        for mode, row in info['bench'].items():
            if row.get('error'):
                rows.append([info['labels'][mode], 'n/a: ' + row['error'], '', '', ''])
                continue
            ratio = row['images_per_sec'] / base['images_per_sec'] \
                if base.get('images_per_sec') else None
            rows.append([info['labels'][mode], '{:.2f} [{:.2f}-{:.2f}]'.format(
                row['images_per_sec'], row['images_per_sec_min'], row['images_per_sec_max']),
                '{:.2f}'.format(ratio) if ratio else '-', '{:.0f}'.format(
                    row['peak_memory_mb']), '{} x {} px'.format(row['batch_size'],
                                                                 row['data_shape'])])
        out += _table(('mode', 'img/s (median [min-max])', 'x fp32', 'peak MB', 'batch'),
                      rows)
    out += ['', '## All-reduce across devices', '']
    if info['allreduce'] is None:
        out.append('Skipped: one device.')
    else:
        out += _table(('kvstore', 'dtype', 'result', 'time'), info['allreduce'])
    out += ['', '## Verdict', '']
    out += _table(('mode', 'verdict'), [[info['labels'][m], info['verdicts'][m]]
                                        for m in MODES])
    return '\n'.join(out) + '\n'


def check(settings):
    """Probe, check and measure as `CheckSettings` say; write and print the report."""
    import gluoncv
    import mxnet as mx
    from ..train.devices import make_contexts
    names = choose_devices(settings)
    contexts = make_contexts(names)
    on_gpu = contexts[0].device_type == 'gpu'
    network = settings.network or ('darknet53' if on_gpu else 'mobilenet0.25')
    shape = settings.data_shape or (416 if on_gpu else 128)
    batch = settings.batch_size or ((8 if on_gpu else 4) * len(contexts))
    info = dict(date=time.strftime('%Y-%m-%d %H:%M'), mxnet=mx.__version__,
                gluoncv=gluoncv.__version__, names=names, network=network, shape=shape,
                visible=os.environ.get('CUDA_VISIBLE_DEVICES'), flags=build_flags(),
                labels={'fp32': 'fp32', 'fp16': 'fp16' if on_gpu else 'fp16 (CPU half path)',
                        'amp': 'amp'})
    print('probing', ','.join(names), flush=True)
    info['devices'] = device_rows(contexts)
    info['reasons'] = {m: unavailable_reason(m, contexts, info['devices']) for m in MODES}
    info['checks'] = {}
    with tempfile.TemporaryDirectory(prefix='device_check_') as workdir:
        for mode in ('fp16', 'amp'):
            if info['reasons'][mode] is None:
                print('self-check', mode, flush=True)
                info['checks'][mode] = agreement(mode, network, shape, contexts, workdir)
    info['bench'] = None
    if settings.benchmark:
        info['bench'] = {}
        for mode in MODES:
            print('benchmark', mode, flush=True)
            info['bench'][mode] = {'error': info['reasons'][mode]} if info['reasons'][mode] \
                else throughput(mode, network, shape, batch, names, settings)
    info['allreduce'] = allreduce_check(contexts, info['flags']) if len(contexts) > 1 \
        else None
    bench = info['bench'] or {}
    info['verdicts'] = {m: verdict(m, info['reasons'][m], info['checks'].get(m),
                                   bench.get(m), bench.get('fp32'), on_gpu) for m in MODES}
    text = render(info)
    with open(settings.out, 'w') as f:
        f.write(text)
    print(text)
    print('wrote {}'.format(settings.out))
    return 0


COMMAND = Command('check', CheckSettings, (DEVICES, MEASURE), check,
                  __doc__.splitlines()[0], also='scripts/device_check.py', log_level=None)


def main(argv=None):
    """The device report; returns the exit code (2: a user's mistake, one line)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
