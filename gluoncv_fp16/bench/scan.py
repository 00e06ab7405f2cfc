"""Cost of the start-up image scan per image, next to a full decode of the same files.

The scan (``gluoncv_fp16.data.scan``) reads each file and checks its structure (end
marker, frame header) without decoding pixels. This prints, for the validation images
of a VOC-layout folder (generated at VOC's typical 500x375 when none is given), the
median over interleaved rounds of: scan ms/image, full-decode ms/image (what a scan that
decodes would cost), and their ratio. Files are in the page cache after the first round.

    python scripts/benchmark_scan.py --images 300 --rounds 5
    python scripts/benchmark_scan.py --dataset-root ~/.mxnet/datasets/voc/VOC2007 --split test
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from ..data.imageio import BadSampleLog, check_encoded, read_image
from ..data.synthetic import generate
from ..data.voc import read_split


def image_files(root, split):
    return [os.path.join(root, 'JPEGImages', i + '.jpg') for i in read_split(root, split)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--dataset-root', default=None, help='VOC-layout folder (default: generate)')
    p.add_argument('--split', default='val')
    p.add_argument('--images', type=int, default=300, help='images to generate')
    p.add_argument('--width', type=int, default=500)
    p.add_argument('--height', type=int, default=375)
    p.add_argument('--rounds', type=int, default=5)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dataset_root or generate(os.path.join(tmp, 'voc'), num_train=0,
                                             num_val=args.images, width=args.width,
                                             height=args.height)
        files = image_files(root, args.split)
        times = {'scan': [], 'decode': []}
        for _ in range(args.rounds):
            for name, work in (('scan', _scan), ('decode', _decode)):
                start = time.perf_counter()
                work(files)
                times[name].append((time.perf_counter() - start) / len(files) * 1e3)
    scan_ms, decode_ms = (statistics.median(times[k]) for k in ('scan', 'decode'))
    print('{} images ({}), median of {} interleaved rounds:'.format(
        len(files), args.dataset_root or '{}x{} generated'.format(args.width, args.height),
        args.rounds))
    print('  scan (read + structure check): {:.3f} ms/image'.format(scan_ms))
    print('  full decode (read + decode):   {:.3f} ms/image'.format(decode_ms))
    print('  decode / scan: {:.1f}x'.format(decode_ms / scan_ms))


def _scan(files):
    for path in files:
        assert check_encoded(np.fromfile(path, dtype=np.uint8)) is None, path


def _decode(files):
    log = BadSampleLog()
    for path in files:
        assert read_image(path, log) is not None, path


if __name__ == '__main__':
    main()
