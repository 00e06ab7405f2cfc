"""Benchmark precision modes side by side: training images/s, peak memory, TFLOP/s.

Each configuration runs in its own process (MXNet AMP is process-wide and memory peaks
are per process). Prints a markdown table with ratios against fp32 of the same network,
shape and batch, and writes CSV and a PNG bar chart.

On a V100 (the design target):

    python scripts/benchmark.py --gpus 0 --modes fp32,fp16,amp --networks darknet53 \\
        --data-shapes 416 --batch-sizes 16 --out bench_v100

On CPU, the fp16 row is the CPU half-storage path (FP16 tensors, FP32-accumulated
convolutions): it proves the FP16 path works, it is not expected to be faster.
"""
import argparse
import csv
import subprocess
import sys


# Peak dense throughput, TFLOP/s (vendor figures): FP16 tensor cores / FP32.
GPU_PEAKS = {'V100': (125.0, 15.7), 'A100': (312.0, 19.5), 'T4': (65.0, 8.1),
             'A10': (125.0, 31.2), 'RTX 3090': (71.0, 35.6), 'P100': (18.7, 9.3)}
FIELDS = ('mode', 'label', 'network', 'data_shape', 'batch_size', 'devices',
          'images_per_sec', 'images_per_sec_min', 'images_per_sec_max', 'speedup_vs_fp32',
          'peak_memory_mb', 'memory_vs_fp32', 'tflops', 'peak_tflops', 'skipped_steps',
          'error')


def parse_args(argv=None):
    from gluoncv_fp16.model_zoo import LIGHTEST_NETWORK, network_names
    from gluoncv_fp16.precision.policy import policy_names
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--modes', default=','.join(policy_names()))
    p.add_argument('--networks', default=LIGHTEST_NETWORK,
                   help='comma list of ' + ', '.join(network_names()))
    p.add_argument('--data-shapes', default='128')
    p.add_argument('--batch-sizes', default='4')
    p.add_argument('--gpus', default='', help="GPU ids like 0,1; '' = CPU")
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--out', default='benchmark', help='prefix of the CSV and PNG written')
    return p.parse_args(argv)


def _ints(text, flag):
    try:
        return [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        sys.exit('error: {} {!r}: use comma-separated integers'.format(flag, text))


def gpu_name():
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


def peak_tflops(name, mode):
    from gluoncv_fp16.precision.policy import get_policy
    for key, (fp16, fp32) in GPU_PEAKS.items():
        if name and key in name:
            return fp16 if get_policy(mode).runs_float16 else fp32
    return None


def run_one(args, mode, network, shape, batch, ctx):
    from gluoncv_fp16.bench.mode import run_mode
    return run_mode(mode, network, shape, batch, ctx, args.warmup, args.iters, args.repeats)


def label(mode, on_gpu):
    from gluoncv_fp16.precision.policy import get_policy
    return get_policy(mode).label(on_gpu)


def add_ratios(rows, flops):
    from gluoncv_fp16.precision.policy import FULL_PRECISION
    base = {(r['network'], r['data_shape'], r['batch_size']): r for r in rows
            if r['mode'] == FULL_PRECISION and not r.get('error')}
    for row in rows:
        ref = base.get((row.get('network'), row.get('data_shape'), row.get('batch_size')))
        if row.get('error') or ref is None:
            continue
        row['speedup_vs_fp32'] = row['images_per_sec'] / ref['images_per_sec']
        row['memory_vs_fp32'] = row['peak_memory_mb'] / ref['peak_memory_mb']
        per_image = flops.get((row['network'], row['data_shape']))
        if per_image and row.get('peak_tflops'):
            row['tflops'] = per_image * row['images_per_sec'] / 1e12


def markdown(rows):
    head = ('mode', 'network', 'shape', 'batch', 'img/s (median [min-max])', 'x fp32',
            'peak MB', 'mem x fp32', 'TFLOP/s (peak)')
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        if r.get('error'):
            lines.append('| {} | {} | | | n/a: {} | | | | |'.format(
                r['label'], r.get('network', ''), r['error']))
            continue
        tf = '{:.1f} ({:g})'.format(r['tflops'], r['peak_tflops']) if r.get('tflops') else '-'
        lines.append('| {} | {} | {} | {} | {:.2f} [{:.2f}-{:.2f}] | {} | {:.0f} | {} | {} |'
                     .format(r['label'], r['network'], r['data_shape'], r['batch_size'],
                             r['images_per_sec'], r['images_per_sec_min'],
                             r['images_per_sec_max'], _fmt(r.get('speedup_vs_fp32')),
                             r['peak_memory_mb'], _fmt(r.get('memory_vs_fp32')), tf))
    return '\n'.join(lines)


def _fmt(value):
    return '{:.2f}'.format(value) if value is not None else '-'


def write_outputs(rows, prefix):
    with open(prefix + '.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    good = [r for r in rows if not r.get('error')]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(good)), 3.5))
    names = ['{}\n{} {}px b{}'.format(r['label'].split(' ')[0], r['network'], r['data_shape'],
                                      r['batch_size']) for r in good]
    ax.bar(range(len(good)), [r['images_per_sec'] for r in good],
           yerr=[[r['images_per_sec'] - r['images_per_sec_min'] for r in good],
                 [r['images_per_sec_max'] - r['images_per_sec'] for r in good]], capsize=3)
    ax.set_xticks(range(len(good)))
    ax.set_xticklabels(names, fontsize=7)
    ax.set_ylabel('training images/s')
    fig.tight_layout()
    fig.savefig(prefix + '.png', dpi=90)
    plt.close(fig)
    return prefix + '.csv', prefix + '.png'


def main(argv=None):
    args = parse_args(argv)
    modes = [m.strip() for m in args.modes.split(',') if m.strip()]
    from gluoncv_fp16.precision.policy import policy_names
    bad = [m for m in modes if m not in policy_names()]
    if bad:
        sys.exit('error: --modes {}: choose from {}'.format(','.join(bad),
                                                            ', '.join(policy_names())))
    gpu_ids = _ints(args.gpus, '--gpus')
    ctx = ','.join('gpu:{}'.format(g) for g in gpu_ids) or 'cpu:0'
    device = gpu_name() if gpu_ids else None
    from gluoncv_fp16.model_zoo import get_model, model_name
    from gluoncv_fp16.utils.graph_stats import train_flops_per_image
    rows, flops = [], {}
    for network in args.networks.split(','):
        for shape in _ints(args.data_shapes, '--data-shapes'):
            if gpu_ids:
                net = get_model(model_name(network, 'custom'), pretrained_base=False,
                                classes=['a', 'b', 'c'])
                flops[(network, shape)] = train_flops_per_image(net, shape)
            for batch in _ints(args.batch_sizes, '--batch-sizes'):
                for mode in modes:
                    row = run_one(args, mode, network, shape, batch, ctx)
                    row.update(network=network, data_shape=shape, batch_size=batch,
                               label=label(mode, bool(gpu_ids)),
                               peak_tflops=peak_tflops(device, mode))
                    rows.append(row)
                    print('measured', row['label'], network, shape, batch,
                          row.get('images_per_sec', row.get('error')), flush=True)
    add_ratios(rows, flops)
    print()
    print('Device: {}'.format(device or 'CPU'))
    print(markdown(rows))
    csv_path, png = write_outputs(rows, args.out)
    print('\nwrote {} and {}'.format(csv_path, png))
    return 0


if __name__ == '__main__':
    sys.exit(main())
