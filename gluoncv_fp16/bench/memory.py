"""Training-step memory (activations + gradients) in FP32 vs FP16, and forward GFLOPs.

Everything is read from the symbolic training graph's inferred shapes and dtypes (see
gluoncv_fp16.utils.graph_stats); nothing is allocated or run, so it takes seconds.

    python scripts/memory_analysis.py --networks yolo3_darknet53_coco yolo3_mobilenet1.0_voc \
        --data-shapes 320,416,608 --csv memory.csv
"""
import argparse
import csv
import logging
import sys

from ..model_zoo import DEFAULT_NETWORK, get_model, get_model_list, model_name
from ..utils.graph_stats import compare_precisions

# every network on VOC, and the default one on COCO's 80 classes too
DEFAULT_NETWORKS = (model_name(DEFAULT_NETWORK, 'coco'), *get_model_list('*_voc'))
COLUMNS = (('network', 'network', '{}'), ('data_shape', 'shape', '{}'),
           ('act_fp32_mib', 'act fp32 MiB', '{:.1f}'), ('act_fp16_mib', 'act fp16 MiB', '{:.1f}'),
           ('grad_fp32_mib', 'grad fp32 MiB', '{:.1f}'),
           ('grad_fp16_mib', 'grad fp16 MiB', '{:.1f}'),
           ('total_fp32_mib', 'fp32 MiB', '{:.1f}'), ('total_fp16_mib', 'fp16 MiB', '{:.1f}'),
           ('ratio', 'ratio', '{:.3f}'),
           ('fp16_act_fp32_share', 'FP32 share of fp16 act', '{:.0%}'),
           ('gflops', 'GFLOPs', '{:.2f}'))


def _shapes(text):
    try:
        shapes = [int(s) for s in text.split(',') if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected comma-separated ints like 320,416,608, got {!r}".format(text)) from None
    bad = [s for s in shapes if s <= 0 or s % 32]
    if not shapes or bad:
        raise argparse.ArgumentTypeError(
            "data shapes must be positive multiples of 32 (YOLOv3's stride), got {!r}"
            .format(text))
    return shapes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--networks', nargs='+', default=list(DEFAULT_NETWORKS),
                        help='YOLOv3 names (voc/coco; *_custom differ only in class count)')
    parser.add_argument('--data-shapes', type=_shapes, default=[320, 416, 608],
                        help='comma-separated square input sides (default 320,416,608)')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per step; memory and FLOPs scale with it (default 1)')
    parser.add_argument('--csv', default='memory_analysis.csv',
                        help='where to write the table as CSV (default memory_analysis.csv)')
    args = parser.parse_args(argv)
    allowed = [n for n in get_model_list() if not n.endswith('_custom')]
    unknown = [n for n in args.networks if n not in allowed]
    if unknown:
        parser.error("unknown network(s) {}; choose from {}".format(unknown, allowed))
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1, got {}".format(args.batch_size))
    return args


def markdown_table(rows):
    """The rows as a GitHub markdown table (one line per row)."""
    lines = ['| ' + ' | '.join(title for _, title, _ in COLUMNS) + ' |',
             '|' + '|'.join('---' for _ in COLUMNS) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    rows = []
    for name in args.networks:
        # Never initialised: measured as a GPU runs it (no CPU widening casts).
        net = get_model(name, pretrained=False, pretrained_base=False)
        rows += [dict(network=name, **compare_precisions(net, shape, args.batch_size))
                 for shape in args.data_shapes]
    print(markdown_table(rows))
    with open(args.csv, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    logging.info("wrote %s (batch size %d; MiB = 2**20 bytes)", args.csv, args.batch_size)
    return 0


if __name__ == '__main__':
    sys.exit(main())
