"""Export a trained detector: MXNet symbol + params (FP32 or FP16), or one ONNX file.

``gluoncv-fp16-export``, ``python -m gluoncv_fp16.cli.export`` or ``scripts/export.py``:

    python scripts/export.py runs/best.ckpt --out deploy/yolo3 --dtype float16
    python scripts/export.py runs/best.ckpt --format onnx --out deploy/yolo3
    python scripts/export.py runs/best.ckpt --format onnx --int8 --calib 32 --out deploy/yolo3
    python scripts/export.py yolo3_darknet53_voc.params --network yolo3_darknet53_voc \
        --out deploy/yolo3

MXNet format: load with mx.gluon.SymbolBlock.imports('PREFIX-symbol.json', ['data'],
'PREFIX-0000.params'). ONNX format: PREFIX.onnx with input 'data' (N, 3, S, S) and
outputs ids / scores / boxes after per-class NMS, checked against MXNet with ONNX
Runtime before this script returns. Outputs are float32 for either dtype. Data shape,
classes and normalisation come from the checkpoint (see docs/export_demo.md).
"""
import argparse
import logging
import sys

from ..utils.cli import data_side
from ..errors import CheckpointError
from ..deploy.export import TARGETS, ExportError, export_detector
from ..deploy.onnx_runtime import OnnxRuntimeError
from ..deploy.onnx_int8 import CALIB_METHODS, DEFAULT_CALIB, export_int8, validate_int8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='gluoncv_fp16 checkpoint, or a plain .params file '
                        '(then also --network)')
    parser.add_argument('--out', required=True, help='output prefix, e.g. deploy/yolo3')
    parser.add_argument('--format', choices=('mxnet', 'onnx'), default='mxnet',
                        help='mxnet: PREFIX-symbol.json + PREFIX-0000.params; onnx: PREFIX.onnx')
    parser.add_argument('--dtype', choices=('float32', 'float16'), default='float32',
                        help='input/compute dtype of the export (outputs are always float32)')
    parser.add_argument('--data-shape', type=data_side, default=None,
                        help="square input side (default: the checkpoint's training size, "
                        "else 416)")
    parser.add_argument('--target', choices=TARGETS, default='gpu',
                        help="mxnet float16 only: 'gpu' (default) is the plain FP16 graph; "
                        "'cpu' keeps FP32-widened convolutions so it runs on a CPU")
    parser.add_argument('--network', help='model name, for a plain .params file')
    parser.add_argument('--classes', type=lambda s: [c.strip() for c in s.split(',') if c],
                        help='comma-separated class names, for a plain .params file')
    parser.add_argument('--no-check', action='store_true',
                        help='onnx: skip the ONNX Runtime vs MXNet check')
    # INT8 (deploy/onnx_int8.py): checked in _export before anything is written
    parser.add_argument('--int8', action='store_true',
                        help='onnx: also write PREFIX-int8.onnx, statically quantized with '
                        'ONNX Runtime and checked against FP32 on held-back images')
    parser.add_argument('--calib', type=int, default=DEFAULT_CALIB,
                        help='--int8: calibration images (default %(default)s), from the '
                        "checkpoint's training split unless --calib-dir")
    parser.add_argument('--calib-dir', default=None,
                        help='--int8: folder of images to calibrate on instead')
    parser.add_argument('--calib-method', default='minmax', metavar='|'.join(CALIB_METHODS),
                        help='--int8: how activation ranges are chosen (default minmax)')
    return parser.parse_args(argv)


def _export_int8(args):
    if args.format != 'onnx':
        raise ExportError('--int8 writes an ONNX model; add --format onnx')
    validate_int8(args.dtype, args.calib, args.calib_dir, args.calib_method)
    fp32, path, check, where = export_int8(
        args.checkpoint, args.out, calib=args.calib, calib_dir=args.calib_dir,
        calib_method=args.calib_method, data_shape=args.data_shape, network=args.network,
        classes=args.classes, check=not args.no_check)
    print('wrote {} (float32) and {} (int8, calibrated on {}, {})'.format(
        fp32.path, path, where, args.calib_method))
    if fp32.check is not None:
        print(fp32.check)
    if check is not None:
        print(check)
    return 0 if (fp32.check is None or fp32.check.ok) and (check is None or check.ok) else 1


def _export(args):
    if args.int8:
        return _export_int8(args)
    if args.format == 'mxnet':
        files = export_detector(args.checkpoint, args.out, dtype=args.dtype,
                                target=args.target, data_shape=args.data_shape,
                                network=args.network, classes=args.classes)
        print('wrote {} and {} (+ {})'.format(files.symbol, files.params, files.meta))
        return 0
    from ..deploy.onnx_export import export_onnx
    result = export_onnx(args.checkpoint, args.out, dtype=args.dtype,
                         data_shape=args.data_shape, network=args.network,
                         classes=args.classes, check_images=False if args.no_check else None)
    print('wrote {} ({}, {} px, classes {})'.format(
        result.path, args.dtype, result.metadata['data_shape'],
        ','.join(result.metadata['classes'])))
    if result.check is not None:
        print(result.check)
        return 0 if result.check.ok else 1
    return 0


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    args = parse_args(argv)
    try:
        return _export(args)
    except (ExportError, CheckpointError, OnnxRuntimeError) as err:
        print('export.py: error: {}'.format(err), file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
