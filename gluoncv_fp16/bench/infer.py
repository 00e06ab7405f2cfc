"""CPU inference benchmark of ONNX exports: FP32 vs INT8 (vs any other export), side by side.

``python -m gluoncv_fp16.bench.infer deploy/yolo3.onnx deploy/yolo3-int8.onnx``

For each thread count (1 and all cores by default) and batch size (1: latency, 8:
throughput) every model gets its own ONNX Runtime session; then rounds are interleaved
(each round runs every model once, in a rotated order), so a change of machine load
hits all models alike. Per model: median time per batch and the spread (min-max over
rounds); per other model: the median over rounds of its time / the first model's time
in the same round, with the range of those ratios. Printed with the CPU, its
instruction-set flags, the load average before and after, the commit and the ONNX
Runtime version, so a result can go to docs/results.md as it is.

Which kernels run: ONNX Runtime's CPU provider uses its own MLAS kernels, which pick
AVX2 / AVX-512 / AVX-512 VNNI (/ AMX on CPUs that have it) at run time and do not log
the choice; the benchmark prints the CPU's flags and, per model, the operator types of
the graph ONNX Runtime actually runs (``--kernels``; e.g. QDQ pairs fused into
``QLinearConv``). ``--profile`` adds ONNX Runtime's per-operator profile: the share of
time per operator type, which says where the time goes.
"""
import argparse
import collections
import datetime
import json
import logging
import os
import sys
import tempfile
import time

import numpy as np

from .machine import commit, cpu_features, cpu_model

__all__ = ['benchmark', 'operator_profile', 'session_operators', 'main']

logger = logging.getLogger(__name__)


def _ort():
    from ..deploy.onnx_runtime import _runtime  # pylint: disable=import-outside-toplevel
    return _runtime()


def _label(path, meta):
    """'int8', 'float32', 'float16' from the export's metadata, else the file name."""
    return meta.get('precision') or meta.get('dtype') or os.path.basename(path)


def _session(path, threads, **options):
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    for key, value in options.items():
        setattr(so, key, value)
    return ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])


def _metadata(session):
    return dict(session.get_modelmeta().custom_metadata_map)


def _input(session, batch, seed=0):
    side = int(session.get_inputs()[0].shape[2])
    dtype = 'float16' if 'float16' in session.get_inputs()[0].type else 'float32'
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, side, side)).astype(dtype)


def benchmark(paths, threads, batch, rounds=7, warmup=2):
    """Interleaved timing of `paths` at one thread count and batch size.

    Returns
    -------
    dict
        ``{'labels': [...], 'seconds': {label: [per round]}, 'ratios': {label: [per
        round, vs the first model]}}``.
    """
    sessions, labels = [], []
    for path in paths:
        session = _session(path, threads)
        label = _label(path, _metadata(session))
        while label in labels:
            label += "'"
        sessions.append(session)
        labels.append(label)
    inputs = [{'data': _input(s, batch)} for s in sessions]
    for _ in range(warmup):
        for session, feed in zip(sessions, inputs):
            session.run(None, feed)
    seconds = {label: [] for label in labels}
    for r in range(rounds):
        order = list(range(len(sessions)))
        order = order[r % len(order):] + order[:r % len(order)]
        for i in order:
            start = time.perf_counter()
            sessions[i].run(None, inputs[i])
            seconds[labels[i]].append(time.perf_counter() - start)
    base = np.array(seconds[labels[0]])
    ratios = {label: list(np.array(seconds[label]) / base) for label in labels[1:]}
    return dict(labels=labels, seconds=seconds, ratios=ratios)


def session_operators(path, threads=1):
    """Operator types (Counter) of the graph ONNX Runtime runs for `path` after its
    optimisations (fusions such as DequantizeLinear + Conv + QuantizeLinear ->
    QLinearConv)."""
    import onnx  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'optimised.onnx')
        # severity 3: no warning that the saved graph holds this CPU's layout choices
        _session(path, threads, optimized_model_filepath=out, log_severity_level=3)
        return collections.Counter(n.op_type for n in onnx.load(out).graph.node)


def operator_profile(path, threads, batch, runs=5):
    """ONNX Runtime's profile of `runs` runs: ``[(op_type, share of kernel time), ...]``,
    largest first."""
    with tempfile.TemporaryDirectory() as tmp:
        session = _session(path, threads, enable_profiling=True,
                           profile_file_prefix=os.path.join(tmp, 'profile'))
        feed = {'data': _input(session, batch)}
        for _ in range(runs + 1):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    totals = collections.Counter()
    for event in events:
        args = event.get('args', {})
        if event.get('cat') == 'Node' and event.get('name', '').endswith('_kernel_time'):
            totals[args.get('op_name', '?')] += event.get('dur', 0)
    whole = sum(totals.values()) or 1
    return [(op, dur / whole) for op, dur in totals.most_common()]


def _fmt_spread(values, scale=1.0, digits=1):
    values = np.asarray(values) * scale
    return '{:.{d}f} [{:.{d}f}-{:.{d}f}]'.format(np.median(values), values.min(), values.max(),
                                                  d=digits)


def _header(paths):
    ort = _ort()
    load = os.getloadavg() if hasattr(os, 'getloadavg') else None
    print('date {} | commit {} | onnxruntime {} | {} | {} cores | flags {}'.format(
        datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        commit(), ort.__version__, cpu_model(), os.cpu_count(),
        ','.join(cpu_features()) or 'none'))
    print('load average before: {}'.format('{:.2f} {:.2f} {:.2f}'.format(*load)
                                           if load else 'n/a'))
    print('models: ' + ', '.join(paths))


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('models', nargs='+', help='ONNX exports; the first is the baseline of '
                   'the ratios (e.g. the FP32 .onnx, then the -int8.onnx)')
    p.add_argument('--threads', default='1,all',
                   help="comma-separated intra-op thread counts, 'all' = every core")
    p.add_argument('--batch', default='1,8', help='comma-separated batch sizes')
    p.add_argument('--rounds', type=int, default=7, help='interleaved rounds (default 7)')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--kernels', action='store_true',
                   help='print the operator types ONNX Runtime runs for each model')
    p.add_argument('--profile', action='store_true',
                   help="print ONNX Runtime's per-operator time shares (1 thread, batch 1)")
    return p.parse_args(argv)


def _ints(text, name):
    try:
        values = [os.cpu_count() if v.strip() == 'all' else int(v) for v in text.split(',')]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError('--{} takes positive integers (comma-separated), got {!r}'.format(
            name, text))
    return sorted(set(values))


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    args = _parse(argv)
    try:
        threads, batches = _ints(args.threads, 'threads'), _ints(args.batch, 'batch')
        if args.rounds < 1:
            raise ValueError('--rounds must be >= 1, got {}'.format(args.rounds))
        missing = [m for m in args.models if not os.path.isfile(m)]
        if missing:
            raise ValueError("no ONNX model at '{}'; write one with gluoncv-fp16-export "
                             "CKPT --format onnx [--int8]".format(missing[0]))
        _ort()
    except (ValueError, ImportError) as err:
        print('infer.py: error: {}'.format(err), file=sys.stderr)
        return 2
    _header(args.models)
    for n in threads:
        for batch in batches:
            result = benchmark(args.models, n, batch, args.rounds, args.warmup)
            base = result['labels'][0]
            cells = []
            for label in result['labels']:
                ms = _fmt_spread(result['seconds'][label], 1000.0 / batch)
                cell = '{} {} ms/img'.format(label, ms)
                if label != base:
                    cell += ', x{} of {}'.format(_fmt_spread(result['ratios'][label], 1, 2),
                                                 base)
                cells.append(cell)
            rate = batch / np.median(result['seconds'][base])
            print('threads {} batch {} ({} rounds; median [min-max]): {} | {} {:.1f} img/s'
                  .format(n, batch, args.rounds, ' | '.join(cells), base, rate))
    load = os.getloadavg() if hasattr(os, 'getloadavg') else None
    print('load average after: {}'.format('{:.2f} {:.2f} {:.2f}'.format(*load)
                                          if load else 'n/a'))
    if args.kernels:
        for path in args.models:
            ops = session_operators(path)
            print('{} runs: {}'.format(path, ', '.join('{} {}'.format(k, v)
                                                       for k, v in ops.most_common(8))))
    if args.profile:
        for path in args.models:
            shares = operator_profile(path, 1, 1)
            print('{} profile (1 thread, batch 1): {}'.format(path, ', '.join(
                '{} {:.0%}'.format(op, share) for op, share in shares[:8])))
    return 0


if __name__ == '__main__':
    sys.exit(main())
