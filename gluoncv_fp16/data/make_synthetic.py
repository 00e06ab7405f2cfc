"""Write the synthetic shapes dataset (Pascal VOC layout) into a folder.

    python scripts/make_synthetic.py data/VOCshapes
    python scripts/make_synthetic.py data/VOCshapes --num-train 500 --num-val 100 --size 128

The same arguments always write byte-identical annotations and identical pixels. Read
it with GluonCV's VOC reader (a ``VOCDetection`` subclass with ``CLASSES =
gluoncv_fp16.data.SHAPE_CLASSES``), or with this package's VOC-layout dataset.
"""
import argparse
import sys

from .synthetic import SHAPE_CLASSES, generate


def _count(text, minimum):
    value = int(text)
    if value < minimum:
        raise argparse.ArgumentTypeError('must be >= {}, got {}'.format(minimum, text))
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder (created if needed)')
    parser.add_argument('--num-train', type=lambda t: _count(t, 0), default=200,
                        help='training images (default 200; 0 for a held-out '
                             'evaluation set)')
    parser.add_argument('--num-val', type=lambda t: _count(t, 0), default=50,
                        help='validation images (default 50)')
    # Below 32 px the smallest shape (10% of the side) is under 3 px and no longer a shape.
    parser.add_argument('--size', type=lambda t: _count(t, 32), default=160,
                        help='image width and height in pixels (default 160, minimum 32)')
    parser.add_argument('--max-objects', type=lambda t: _count(t, 1), default=3,
                        help='at most this many shapes per image (default 3)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    generate(args.root, num_train=args.num_train, num_val=args.num_val, width=args.size,
             height=args.size, max_objects=args.max_objects, seed=args.seed)
    print('Wrote {} train + {} val images of {}x{} px, classes {}, to {}'.format(
        args.num_train, args.num_val, args.size, args.size, ', '.join(SHAPE_CLASSES),
        args.root))
    return 0


if __name__ == '__main__':
    sys.exit(main())
