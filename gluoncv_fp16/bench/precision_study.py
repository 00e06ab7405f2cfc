"""Which precision modes diverge as the learning rate grows? (a mixed-precision study)

The published ResNet-50 experiment in miniature, on the synthetic set on CPU: fp32,
fp16 without loss scaling (the plain recipe), fp16 with dynamic loss scaling, and amp
where it can run, each trained N iterations at increasing learning rates (and batch
sizes). The NaN guard is off (no rollback), so a run that produces inf/NaN stops and is
reported as diverged at that iteration. Prints a markdown table, writes CSV and a PNG.

    python scripts/precision_study.py --lrs 0.001,0.01,0.05 --iters 40 --out study
"""
import argparse
import csv
import math
import os
import subprocess
import sys
import tempfile

# The folder that holds the package: the child process imports it from there.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODES = {'fp32': ['--loss-scale', 'none'],
         'fp16-noscale': ['--fp16', '--loss-scale', 'none'],
         'fp16-dynamic': ['--fp16', '--loss-scale', 'dynamic'],
         'amp': ['--amp']}
FIELDS = ('mode', 'lr', 'batch_size', 'status', 'diverged_at', 'steps', 'skipped_steps',
          'final_loss', 'map', 'loss_scale', 'error')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--modes', default=','.join(MODES))
    p.add_argument('--lrs', default='0.001,0.01,0.05')
    p.add_argument('--batch-sizes', default='8')
    p.add_argument('--iters', type=int, default=40)
    p.add_argument('--network', default='mobilenet0.25')
    p.add_argument('--data-shape', type=int, default=96)
    p.add_argument('--dataset-root', default=None, help='synthetic set folder (default cache)')
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--out', default='precision_study')
    return p.parse_args(argv)


def _runner_code():
    """Child process: one run, guard off, prints a RESULT line (AMP is process-wide)."""
    return (
        "import json, sys\n"
        "sys.path.insert(0, {root!r})\n"
        "from gluoncv_fp16.cli import train as train_cli\n"
        "from gluoncv_fp16.train.build import build_training\n"
        "from gluoncv_fp16.train.config import ConfigError\n"
        "from gluoncv_fp16.train.nan_guard import TrainingDiverged\n"
        "from gluoncv_fp16.train.loop import HookBase, LOSS_NAMES\n"
        "class Track(HookBase):\n"
        "    last = float('nan'); steps = 0\n"
        "    def after_step(self, loop, step):\n"
        "        Track.last = sum(step[k] for k in LOSS_NAMES); Track.steps += 1\n"
        "res = {{}}\n"
        "try:\n"
        "    cfg = train_cli.make_config(train_cli.parse_args(sys.argv[1:]))\n"
        "    loop, start = build_training(cfg)\n"
        "    loop.hooks.append(Track())\n"
        "    try:\n"
        "        loop.train(start, cfg.epochs, max_iters=cfg.max_iters)\n"
        "        res['status'] = 'ok'\n"
        "    except TrainingDiverged:\n"
        "        res.update(status='diverged', diverged_at=loop.iteration)\n"
        "    res.update(steps=Track.steps, final_loss=Track.last,\n"
        "               skipped_steps=int(getattr(loop.scaler, 'total_skips', 0)),\n"
        "               loss_scale=loop.active_scaler.scale_value,\n"
        "               map=loop.record.epoch.get('map', float('nan')))\n"
        "except ConfigError as err:\n"
        "    res.update(status='n/a', error=str(err))\n"
        "print('RESULT ' + json.dumps(res))\n").format(root=ROOT)


def run_one(args, mode, lr, batch, workdir):
    argv = ['--network', args.network, '--data-shape', str(args.data_shape),
            '--batch-size', str(batch), '--dataset', 'synthetic', '-j', '0', '--gpus', '',
            # as many epochs as --iters needs (the synthetic train split is 25 batches of 8)
            '--epochs', '100000', '--max-iters', str(args.iters), '--lr', str(lr),
            '--seed', str(args.seed), '--no-random-shape', '--no-plots',
            '--log-interval', '1000', '--max-recoveries', '0',
            '--save-prefix', os.path.join(workdir, '{}_{}_{}_'.format(mode, lr, batch)),
            *MODES[mode]]
    if args.dataset_root:
        argv += ['--dataset-root', args.dataset_root]
    import json
    out = subprocess.run([sys.executable, '-c', _runner_code(), *argv], capture_output=True,
                         text=True, cwd=ROOT)
    for line in out.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    tail = (out.stderr.strip().splitlines() or ['no output'])[-1]
    return {'status': 'failed', 'error': tail}


def markdown(rows):
    lines = ['| mode | lr | batch | result | steps (skipped) | final loss | mAP | loss scale |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        if r['status'] in ('n/a', 'failed'):
            result = '{}: {}'.format(r['status'], r.get('error', ''))
            lines.append('| {} | {} | {} | {} | | | | |'.format(r['mode'], r['lr'],
                                                                 r['batch_size'], result))
            continue
        result = 'diverged (NaN at it. {})'.format(r['diverged_at']) \
            if r['status'] == 'diverged' else 'trains'
        lines.append('| {} | {} | {} | {} | {} ({}) | {} | {} | {:g} |'.format(
            r['mode'], r['lr'], r['batch_size'], result, r['steps'], r['skipped_steps'],
            _num(r['final_loss']), _num(r['map'], 4), r['loss_scale']))
    return '\n'.join(lines)


def _num(value, digits=2):
    return '-' if value is None or (isinstance(value, float) and math.isnan(value)) \
        else '{:.{}f}'.format(value, digits)


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for mode in dict.fromkeys(r['mode'] for r in rows):
        pts = [(float(r['lr']), r['final_loss']) for r in rows
               if r['mode'] == mode and r['status'] == 'ok']
        bad = [float(r['lr']) for r in rows if r['mode'] == mode and r['status'] == 'diverged']
        line = ax.plot(*zip(*pts), marker='o', label=mode)[0] if pts else None
        if bad:
            ax.scatter(bad, [ax.get_ylim()[1] if pts else 1.0] * len(bad), marker='x', s=80,
                       color=line.get_color() if line else None,
                       label=None if line else mode + ' (diverged)')
    ax.set_xscale('log')
    ax.set_xlabel('learning rate')
    ax.set_ylabel('final training loss (x = diverged)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    modes = [m for m in args.modes.split(',') if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        sys.exit('error: --modes {}: choose from {}'.format(','.join(unknown), ','.join(MODES)))
    try:
        lrs = [float(v) for v in args.lrs.split(',') if v]
        batches = [int(v) for v in args.batch_sizes.split(',') if v]
    except ValueError:
        sys.exit('error: --lrs and --batch-sizes take comma-separated numbers')
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for batch in batches:
            for lr in lrs:
                for mode in modes:
                    row = {'mode': mode, 'lr': lr, 'batch_size': batch, 'diverged_at': None,
                           **run_one(args, mode, lr, batch, workdir)}
                    rows.append(row)
                    print('ran', mode, lr, batch, row['status'], flush=True)
    print()
    print(markdown(rows))
    with open(args.out + '.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out + '.png')
    print('\nwrote {0}.csv and {0}.png'.format(args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
