"""Draw a detector's boxes, class names and scores on images; one PNG per input.

``gluoncv-fp16-demo``, ``python -m gluoncv_fp16.cli.demo`` or ``scripts/demo.py``:

    python scripts/demo.py photo1.jpg photo2.jpg --params runs/best.ckpt --out demo/
    python scripts/demo.py photo1.jpg --exported deploy/yolo3 --thresh 0.3
    python scripts/demo.py photo1.jpg --onnx deploy/yolo3.onnx

Data shape, classes and normalisation come from the model unless --data-shape is given.
Without --thresh, boxes scoring at least half the best score over all the images are
drawn.
"""
import logging
import os
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2

from ..data.options import data_side_problem
from ..deploy.predict import Detections, auto_threshold, draw_detections, load_detector, read_image
from ..utils.options import flag, rule, setting
from .command import Command

__all__ = ['DemoSettings', 'COMMAND', 'main', 'demo']

logger = logging.getLogger('demo')

INPUT, MODEL, OUTPUT = 'images', 'model (one of)', 'output'


def _model_source(params, exported, onnx):
    """(load_detector keyword, path) of the one source given."""
    given = [(key, path) for key, path in (('checkpoint', params), ('exported', exported),
                                           ('onnx', onnx)) if path]
    return given[0] if given else None


@dataclass(frozen=True)
class DemoSettings:
    """The demo command's settings, each declared with its flag."""
    images: Tuple[str, ...] = setting(
        flag('images', group=INPUT, nargs='+', metavar='IMAGE',
             help='image files (JPEG, PNG, ...)'),
        convert=lambda paths: tuple(paths) if paths else ())
    source: Optional[Tuple[str, str]] = setting(
        flag('--params', group=MODEL,
             help='a gluoncv_fp16 checkpoint (a plain .params: export it with '
                  'scripts/export.py --network, use --exported)'),
        flag('--exported', group=MODEL,
             help='an MXNet export prefix (from scripts/export.py)'),
        flag('--onnx', group=MODEL,
             help='an ONNX export (scripts/export.py --format onnx), run with ONNX Runtime'),
        convert=_model_source, exclusive=True, required=True)
    thresh: Optional[float] = setting(
        flag('--thresh', group=OUTPUT, type=float,
             help='minimum score of a drawn box (default: half the best score over the '
                  'images)'),
        check=rule(lambda v: v is None or 0 <= v <= 1,
                   '--thresh must be between 0 and 1, got {}'))
    out: str = setting(flag('--out', group=OUTPUT, default='demo_out', help='output folder'))
    data_shape: Optional[int] = setting(
        flag('--data-shape', group=OUTPUT, type=int,
             help="network input side (default: the model's training size, else 416)"),
        check=lambda v: data_side_problem(v, optional=True))


def output_paths(images, out_dir):
    """``out_dir/<stem>.png`` per image; repeated stems get ``-1``, ``-2`` ..."""
    seen, paths = {}, []
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        paths.append(os.path.join(out_dir, stem + ('-{}'.format(count) if count else '')
                                  + '.png'))
    return paths


def demo(settings):
    """Draw with the validated `DemoSettings`; returns the exit code."""
    images = [read_image(path) for path in settings.images]  # fail before the model loads
    kind, model_path = settings.source
    detector = load_detector(data_shape=settings.data_shape, **{kind: model_path})
    found = [detector.detect(image, 0.0) for image in images]
    thresh = settings.thresh
    if thresh is None:
        thresh = auto_threshold([d.scores.max() for d in found if len(d)])
        logger.info('threshold %.2f (half the best score; set --thresh)', thresh)
    logger.info('%s, %d px, classes %s', type(detector.block).__name__, detector.data_shape,
                ','.join(detector.classes))
    os.makedirs(settings.out, exist_ok=True)
    for path, image, everything, out in zip(settings.images, images, found,
                                            output_paths(settings.images, settings.out)):
        keep = everything.scores >= thresh
        detections = Detections(everything.boxes[keep], everything.scores[keep],
                                everything.class_ids[keep])
        cv2.imwrite(out, draw_detections(image, detections, detector.classes))
        logger.info('%s: %d detections -> %s', path, len(detections), out)
    return 0


COMMAND = Command('demo', DemoSettings, (INPUT, MODEL, OUTPUT), demo,
                  __doc__.splitlines()[0], also='scripts/demo.py', log_level=logging.INFO)


def main(argv=None):
    """The demo command; returns the exit code (2: a user's mistake, one line)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
