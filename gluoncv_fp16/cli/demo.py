"""Draw a detector's boxes, class names and scores on images; one PNG per input.

``gluoncv-fp16-demo``, ``python -m gluoncv_fp16.cli.demo`` or ``scripts/demo.py``:

    python scripts/demo.py photo1.jpg photo2.jpg --params runs/best.ckpt --out demo/
    python scripts/demo.py photo1.jpg --exported deploy/yolo3 --thresh 0.3
    python scripts/demo.py photo1.jpg --onnx deploy/yolo3.onnx

Data shape, classes and normalisation come from the model unless --data-shape is given.
Without --thresh, boxes scoring at least half the best score over all the images are
drawn.
"""
import argparse
import logging
import os
import sys

import cv2

from ..utils.cli import data_side, fraction
from ..errors import CheckpointError
from ..deploy.predict import (Detections, PredictError, auto_threshold, draw_detections,
                                         load_detector, read_image)

logger = logging.getLogger('demo')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('images', nargs='+', help='image files (JPEG, PNG, ...)')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--params', help='a gluoncv_fp16 checkpoint (a plain .params: '
                        'export it with scripts/export.py --network, use --exported)')
    source.add_argument('--exported', help='an MXNet export prefix (from scripts/export.py)')
    source.add_argument('--onnx', help='an ONNX export (scripts/export.py --format onnx), '
                        'run with ONNX Runtime')
    parser.add_argument('--thresh', type=fraction, default=None,
                        help='minimum score of a drawn box (default: half the best score '
                        'over the images)')
    parser.add_argument('--out', default='demo_out', help='output folder (default demo_out)')
    parser.add_argument('--data-shape', type=data_side, default=None,
                        help="network input side (default: the model's training size, "
                        "else 416)")
    return parser.parse_args(argv)


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


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = parse_args(argv)
    try:
        images = [read_image(path) for path in args.images]  # fail before the model loads
        detector = load_detector(checkpoint=args.params, exported=args.exported,
                                 onnx=args.onnx, data_shape=args.data_shape)
    except (PredictError, CheckpointError) as err:
        print('demo.py: error: {}'.format(err), file=sys.stderr)
        return 2
    found = [detector.detect(image, 0.0) for image in images]
    thresh = args.thresh
    if thresh is None:
        thresh = auto_threshold([d.scores.max() for d in found if len(d)])
        logger.info('threshold %.2f (half the best score; set --thresh)', thresh)
    logger.info('%s, %d px, classes %s', type(detector.block).__name__, detector.data_shape,
                ','.join(detector.classes))
    os.makedirs(args.out, exist_ok=True)
    for path, image, everything, out in zip(args.images, images, found,
                                            output_paths(args.images, args.out)):
        keep = everything.scores >= thresh
        detections = Detections(everything.boxes[keep], everything.scores[keep],
                                everything.class_ids[keep])
        cv2.imwrite(out, draw_detections(image, detections, detector.classes))
        logger.info('%s: %d detections -> %s', path, len(detections), out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
