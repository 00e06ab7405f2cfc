"""Side-by-side speed of GluonCV's YOLOv3 train transform and gluoncv_fp16's fast one.

Prints images/s per process of both transforms on the same VOC-sized image and boxes
(one run, interleaved rounds, so machine noise hits both), their ratio, and the
throughput of gluoncv_fp16's training loader with 0, 1 and 2 workers and random shapes.

    python scripts/benchmark_data.py                      # defaults below
    python scripts/benchmark_data.py --size 416 --rounds 3 --loader-batches 30
    python scripts/benchmark_data.py --all-threads   # MXNet/OpenCV thread pools on
"""
import argparse
import logging
import os
import random
import sys
import tempfile
import time

# One compute thread per process unless told otherwise: "images/s per process" then
# means one core's work for both transforms, and a busy machine's other jobs distort
# the ratio less. Must be set before MXNet and OpenCV start their thread pools.
if '--all-threads' not in sys.argv:
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('MXNET_CPU_WORKER_NTHREADS', '1')

# pylint: disable=wrong-import-position
import cv2
import numpy as np
import mxnet as mx
from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform

from gluoncv_fp16.data.transforms import YOLO3FastTrainTransform
from gluoncv_fp16.model_zoo import get_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--network', default='yolo3_darknet53_voc')
    parser.add_argument('--size', type=int, default=416, help='transform output size')
    parser.add_argument('--image-size', default='500x375', help='source WxH (VOC-like)')
    parser.add_argument('--gluoncv-images', type=int, default=30,
                        help='images per round for GluonCV (it is slow)')
    parser.add_argument('--fast-images', type=int, default=300,
                        help='images per round for the fast transform')
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--loader-batches', type=int, default=20,
                        help='batches timed per loader setting (0 skips the loader)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--workers', default='0,1,2')
    parser.add_argument('--all-threads', action='store_true',
                        help='let MXNet and OpenCV use all cores (default: one thread)')
    return parser.parse_args(argv)


def sample(image_size, seed=0):
    """A random VOC-sized RGB image and three boxes (small, medium, large)."""
    width, height = (int(v) for v in image_size.lower().split('x'))
    rng = np.random.RandomState(seed)
    img = rng.randint(0, 256, size=(height, width, 3)).astype(np.uint8)
    label = np.array([[0.02 * width, 0.05 * height, 0.40 * width, 0.80 * height, 3],
                      [0.30 * width, 0.13 * height, 0.96 * width, 0.99 * height, 7],
                      [0.60 * width, 0.53 * height, 0.70 * width, 0.69 * height, 14]],
                     dtype=np.float32)
    return img, label


def images_per_second(fn, count):
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)


def bench_transforms(args, net):
    img, label = sample(args.image_size)
    nd_img = mx.nd.array(img, dtype='uint8')
    gcv = YOLO3DefaultTrainTransform(args.size, args.size, net)
    fast = YOLO3FastTrainTransform(args.size, args.size, net, seed=0)
    np.random.seed(0)
    random.seed(0)
    rates = {'gluoncv': [], 'fast': []}
    for _ in range(5):  # warm-up: first calls pay for allocations and lazy imports
        gcv(nd_img, label)[0].wait_to_read()
        fast(nd_img, label)
    for _ in range(args.rounds):
        rates['gluoncv'].append(images_per_second(
            lambda: [a.wait_to_read() for a in gcv(nd_img, label)], args.gluoncv_images))
        # the drop-in call, NDArray in and out, exactly as GluonCV is used
        rates['fast'].append(images_per_second(lambda: fast(nd_img, label),
                                               args.fast_images))
    gcv_rate, fast_rate = np.median(rates['gluoncv']), np.median(rates['fast'])
    print('transform at {0}x{0} on a {1} image, 3 boxes, one process, {3} (median of {2} '
          'rounds)'.format(args.size, args.image_size, args.rounds,
                           'all threads' if args.all_threads else 'one thread'))
    print('  gluoncv YOLO3DefaultTrainTransform : {:8.1f} img/s'.format(gcv_rate))
    print('  gluoncv_fp16 YOLO3FastTrainTransform: {:8.1f} img/s'.format(fast_rate))
    print('  speed-up                           : {:8.1f}x'.format(fast_rate / gcv_rate))


def _endless(loader):
    """Batches of epoch 0, 1, 2, ... (the small benchmark set holds few batches)."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for batch in loader:
            yield batch
        epoch += 1


def bench_loader(args, net):
    from gluoncv_fp16.data import ensure_synthetic
    from gluoncv_fp16.data.datasets import build_datasets
    from gluoncv_fp16.data.loader import make_train_loader
    width, height = (int(v) for v in args.image_size.lower().split('x'))
    root = os.path.join(tempfile.gettempdir(), 'gluoncv_fp16_bench_{}'.format(args.image_size))
    ensure_synthetic(root, num_train=48, num_val=4, width=width, height=height)
    train, _, _ = build_datasets('custom', root=root)
    print('train loader: batch {}, a new random shape (320..608) every batch, synthetic {} '
          'JPEG images decoded from disk, mixup off'.format(args.batch_size, args.image_size))
    for workers in (int(w) for w in args.workers.split(',')):
        loader = make_train_loader(train, net, args.batch_size, args.size,
                                   num_workers=workers, random_shape=True, shape_interval=1)
        batches = _endless(loader)
        next(batches)  # start-up (worker pool) is not throughput
        start = time.perf_counter()
        count = 0
        for _ in range(args.loader_batches):
            count += next(batches)[0].shape[0]
        rate = count / (time.perf_counter() - start)
        loader.close()
        print('  num_workers={}: {:8.1f} img/s'.format(workers, rate))


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.all_threads:
        cv2.setNumThreads(1)
    net = get_model(args.network, pretrained_base=False)
    net.initialize()
    bench_transforms(args, net)
    if args.loader_batches > 0:
        bench_loader(args, net)


if __name__ == '__main__':
    main()
