"""Export a trained detector: MXNet symbol + params (FP32 or FP16), or one ONNX file.

``gluoncv-fp16-export``, ``python -m gluoncv_fp16.cli.export`` or ``scripts/export.py``:

    python scripts/export.py runs/best.ckpt --out deploy/yolo3 --dtype float16
    python scripts/export.py runs/best.ckpt --format onnx --out deploy/yolo3
    python scripts/export.py yolo3_darknet53_voc.params --network yolo3_darknet53_voc \
        --out deploy/yolo3

MXNet format: load with mx.gluon.SymbolBlock.imports('PREFIX-symbol.json', ['data'],
'PREFIX-0000.params'). ONNX format: PREFIX.onnx with input 'data' (N, 3, S, S) and
outputs ids / scores / boxes after per-class NMS, checked against MXNet with ONNX
Runtime before this script returns. Outputs are float32 for either dtype. Data shape,
classes and normalisation come from the checkpoint (see docs/export_demo.md).
"""
import sys
from dataclasses import dataclass
from typing import List, Optional

from ..data.options import class_names, data_side_problem
from ..deploy.export import TARGETS, export_detector
from ..utils.options import flag, setting
from .command import Command

__all__ = ['ExportSettings', 'COMMAND', 'main', 'export']

MODEL, OUTPUT = 'model', 'export'


def _class_list(text):
    names = class_names(text)
    return list(names) if names is not None else None


@dataclass(frozen=True)
class ExportSettings:
    """The export command's settings, each declared with its flag."""
    checkpoint: str = setting(
        flag('checkpoint', group=MODEL, metavar='MODEL',
             help='gluoncv_fp16 checkpoint, or a plain .params file (then also --network)'))
    network: Optional[str] = setting(
        flag('--network', group=MODEL, help='model name, for a plain .params file'))
    classes: Optional[List[str]] = setting(
        flag('--classes', group=MODEL,
             help='comma-separated class names, for a plain .params file'),
        convert=_class_list)
    out: str = setting(
        flag('--out', group=OUTPUT, required=True, help='output prefix, e.g. deploy/yolo3'))
    format: str = setting(
        flag('--format', group=OUTPUT, choices=('mxnet', 'onnx'), default='mxnet',
             help='mxnet: PREFIX-symbol.json + PREFIX-0000.params; onnx: PREFIX.onnx'))
    dtype: str = setting(
        flag('--dtype', group=OUTPUT, choices=('float32', 'float16'), default='float32',
             help='input/compute dtype of the export (outputs are always float32)'))
    data_shape: Optional[int] = setting(
        flag('--data-shape', group=OUTPUT, type=int,
             help="square input side (default: the checkpoint's training size, else 416)"),
        check=lambda v: data_side_problem(v, optional=True))
    target: str = setting(
        flag('--target', group=OUTPUT, choices=TARGETS, default='gpu',
             help="mxnet float16 only: 'gpu' is the plain FP16 graph; 'cpu' keeps "
                  "FP32-widened convolutions so it runs on a CPU"))
    verify_onnx: bool = setting(
        flag('--no-check', group=OUTPUT, switch=True,
             help='onnx: skip the ONNX Runtime vs MXNet check'),
        convert=lambda off: not off)


def export(settings):
    """Export with the validated `ExportSettings`; returns the exit code (1: the ONNX
    Runtime check failed)."""
    if settings.format == 'mxnet':
        files = export_detector(settings.checkpoint, settings.out, dtype=settings.dtype,
                                target=settings.target, data_shape=settings.data_shape,
                                network=settings.network, classes=settings.classes)
        print('wrote {} and {} (+ {})'.format(files.symbol, files.params, files.meta))
        return 0
    from ..deploy.onnx_export import export_onnx
    result = export_onnx(settings.checkpoint, settings.out, dtype=settings.dtype,
                         data_shape=settings.data_shape, network=settings.network,
                         classes=settings.classes, check_images=None if settings.verify_onnx
                         else False)
    print('wrote {} ({}, {} px, classes {})'.format(
        result.path, settings.dtype, result.metadata['data_shape'],
        ','.join(result.metadata['classes'])))
    if result.check is not None:
        print(result.check)
        return 0 if result.check.ok else 1
    return 0


COMMAND = Command('export', ExportSettings, (MODEL, OUTPUT), export,
                  __doc__.splitlines()[0], also='scripts/export.py')


def main(argv=None):
    """The export command; returns the exit code (2: a user's mistake, one line)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
