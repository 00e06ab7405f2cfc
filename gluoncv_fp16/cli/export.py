"""Export a trained detector: MXNet symbol + params (FP32 or FP16), or one ONNX file.

``gluoncv-fp16-export``, ``python -m gluoncv_fp16.cli.export`` or ``scripts/export.py``:

    python scripts/export.py runs/best.ckpt --out deploy/yolo3 --dtype float16
    python scripts/export.py runs/best.ckpt --format onnx --out deploy/yolo3
    python scripts/export.py runs/best.ckpt --format onnx --int8 --calib 128 --out deploy/yolo3
    python scripts/export.py yolo3_darknet53_voc.params --network yolo3_darknet53_voc \
        --out deploy/yolo3

MXNet format: load with mx.gluon.SymbolBlock.imports('PREFIX-symbol.json', ['data'],
'PREFIX-0000.params'). ONNX format: PREFIX.onnx with input 'data' (N, 3, S, S) and
outputs ids / scores / boxes after per-class NMS, checked against MXNet with ONNX
Runtime before this script returns. Outputs are float32 for either dtype. Data shape,
classes and normalisation come from the checkpoint (see docs/export_demo.md).
"""
import os
import sys
from dataclasses import dataclass
from typing import List, Optional

from ..data.options import class_names, data_side_problem
from ..deploy.export import TARGETS, export_detector
from ..deploy.onnx_int8 import CALIB_METHODS, DEFAULT_CALIB
from ..utils.options import flag, one_of, rule, setting
from .command import Command

__all__ = ['ExportSettings', 'COMMAND', 'main', 'export']

MODEL, OUTPUT, INT8 = 'model', 'export', 'INT8 (onnx)'


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
    # INT8: gluoncv_fp16/deploy/onnx_int8.py
    int8: bool = setting(
        flag('--int8', group=INT8, switch=True,
             help='also write PREFIX-int8.onnx, statically quantized with ONNX Runtime '
                  'and checked against FP32 on held-back images (needs --format onnx)'))
    calib: int = setting(
        flag('--calib', group=INT8, type=int, default=DEFAULT_CALIB,
             help="calibration images, from the checkpoint's training split unless "
                  '--calib-dir'),
        check=rule(lambda v: v >= 1,
                   '--calib must be a positive number of calibration images, got {}'))
    calib_dir: Optional[str] = setting(
        flag('--calib-dir', group=INT8, help='folder of images to calibrate on instead'))
    calib_method: str = setting(
        flag('--calib-method', group=INT8, default='minmax', metavar='METHOD',
             help='how activation ranges are chosen: ' + ', '.join(CALIB_METHODS)),
        check=one_of('--calib-method', CALIB_METHODS))

    def combination_problems(self):
        """INT8 settings that cannot work together with the others."""
        if self.int8 and self.format != 'onnx':
            yield '--int8 writes an ONNX model; add --format onnx'
        if self.int8 and self.dtype != 'float32':
            yield ('--int8 quantizes the FP32 graph; drop --dtype {} (an INT8 export takes '
                   'float32 input and computes in int8)'.format(self.dtype))
        if self.int8 and self.calib_dir is not None and not os.path.isdir(self.calib_dir):
            yield ("--calib-dir '{}' is not a folder; give a folder of JPEG/PNG images like "
                   "the ones the model will see".format(self.calib_dir))


def _export_int8(settings):
    from ..deploy.onnx_int8 import export_int8
    fp32, path, check, where = export_int8(
        settings.checkpoint, settings.out, calib=settings.calib, calib_dir=settings.calib_dir,
        calib_method=settings.calib_method, data_shape=settings.data_shape,
        network=settings.network, classes=settings.classes, check=settings.verify_onnx)
    print('wrote {} (float32) and {} (int8, calibrated on {}, {})'.format(
        fp32.path, path, where, settings.calib_method))
    for result in (fp32.check, check):
        if result is not None:
            print(result)
    return 0 if all(r is None or r.ok for r in (fp32.check, check)) else 1


def export(settings):
    """Export with the validated `ExportSettings`; returns the exit code (1: the ONNX
    Runtime check failed)."""
    if settings.int8:
        return _export_int8(settings)
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


COMMAND = Command('export', ExportSettings, (MODEL, OUTPUT, INT8), export,
                  __doc__.splitlines()[0], also='scripts/export.py')


def main(argv=None):
    """The export command; returns the exit code (2: a user's mistake, one line)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
