#!/usr/bin/env python
"""Export a trained detector to PREFIX-symbol.json + PREFIX-0000.params (FP32 or FP16).

    python scripts/export.py runs/best.ckpt --out deploy/yolo3 --dtype float16
    python scripts/export.py yolo3_darknet53_voc.params --network yolo3_darknet53_voc \
        --out deploy/yolo3

Load the result with mx.gluon.SymbolBlock.imports('PREFIX-symbol.json', ['data'],
'PREFIX-0000.params'); for --dtype float16 feed float16 'data'; outputs (ids, scores,
boxes) are float32. An FP16 export is for GPUs unless --target cpu (see
docs/export_demo.md).
"""
import argparse
import logging
import sys

from gluoncv_fp16.train.checkpoint import CheckpointError
from gluoncv_fp16.deploy.export import TARGETS, ExportError, export_detector
from gluoncv_fp16.model_zoo import CheckpointMismatchError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='gluoncv_fp16 checkpoint, or a plain .params file '
                        '(then also --network)')
    parser.add_argument('--out', required=True, help='output prefix, e.g. deploy/yolo3')
    parser.add_argument('--dtype', choices=('float32', 'float16'), default='float32',
                        help='input/compute dtype of the export (outputs are always float32)')
    parser.add_argument('--data-shape', type=int, default=416,
                        help='square input side used to check the graph (default 416)')
    parser.add_argument('--target', choices=TARGETS, default='gpu',
                        help="float16 only: 'gpu' (default) is the plain FP16 graph; 'cpu' "
                        "keeps FP32-widened convolutions so it runs on a CPU")
    parser.add_argument('--network', help='model name, for a plain .params file')
    parser.add_argument('--classes', type=lambda s: [c.strip() for c in s.split(',') if c],
                        help='comma-separated class names, for a plain .params file')
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    try:
        files = export_detector(args.checkpoint, args.out, dtype=args.dtype,
                                target=args.target, data_shape=args.data_shape,
                                network=args.network, classes=args.classes)
    except (ExportError, CheckpointError, CheckpointMismatchError) as err:
        print('export.py: error: {}'.format(err), file=sys.stderr)
        return 2
    print('wrote {} and {} (+ {})'.format(files.symbol, files.params, files.meta))
    return 0


if __name__ == '__main__':
    sys.exit(main())
