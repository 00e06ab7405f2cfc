"""What a data pipeline costs per image, gluoncv_fp16's next to GluonCV's, in one run.

Prints, from interleaved rounds of the same run (so machine noise hits both pipelines):

1. Worker cost per image by stage -- decode, augment, targets, batchify, transfer --
   on the same JPEG files, in one process. GluonCV's stages are its own pieces:
   ``mx.image.imread``, ``YOLO3DefaultTrainTransform`` without and with the net's
   target generator, ``Tuple(Stack, Pad)`` and the worker's ``ForkingPickler`` dump.
2. Main-process cost per image consuming each loader (batch 8, fixed size, 1 and 2
   workers), split where it runs: the main thread's CPU to **receive** a batch, to
   **enqueue** its copies on a device (a second CPU context here), and for packed
   batches what their unpacking -- normalise, expand the targets -- adds to the training
   step's call (**in step**: the trainer runs it inside the step's graph); and the CPU
   to **copy** every array once into reused arrays, what a host-to-device copy from
   pageable memory costs the host (on a GPU machine, MXNet's copy threads). The main
   thread is the serial part: it sets one process's ceiling. Three loaders,
   rounds interleaved: GluonCV's DataLoader, gluoncv_fp16's (packed batches: uint8
   image, assigned target rows), and gluoncv_fp16's workers sending the dense float32
   batch it sent before packing (this script only).
3. ``--cache ram``: images decoded in the first and the second epoch.
4. With ``--target-ips N``: the worker cores, the main process's cores and the
   single-process ceiling needed.
5. Wrapping a packed batch's host arrays as NDArrays on the main thread: the public
   zero-copy route the loader uses next to the former ctypes route of commit 730231f,
   read from the git history (:mod:`gluoncv_fp16.bench.host_wrap`).

    python scripts/benchmark_data.py --target-ips 2000
    python scripts/benchmark_data.py --rounds 3 --main-batches 10 --workers 1,2
    python -m gluoncv_fp16.bench.data_pipeline --target-ips 2000

"Per image" is one core's work: unless ``--all-threads`` is given, MXNet and OpenMP run
one compute thread (``OMP_NUM_THREADS=1``, ``MXNET_CPU_WORKER_NTHREADS=1``, values
already set are kept). They read these variables once, when MXNet loads.
``scripts/benchmark_data.py`` sets them before its first import; ``python -m`` loads
MXNet (the package's ``__init__``) before this module runs, so there the module re-runs
the same command in place (``os.execve``) with them set, and both commands measure the
same thing without the user having to know the variables. :func:`main` called from
Python leaves the environment as it is.
"""
import argparse
import io
import logging
import os
import pickle
import sys
import tempfile
import time
from multiprocessing.reduction import ForkingPickler

import cv2
import mxnet as mx
import numpy as np
from gluoncv.data.batchify import Pad, Stack, Tuple
from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
from gluoncv.model_zoo.yolo.yolo_target import YOLOV3PrefetchTargetGenerator
from mxnet import autograd

from ..data import ensure_synthetic, imageio
from ..data.batch_ring import BatchRing, batch_layout
from ..data.batchify import batch_specs, fill_batch, train_fields
from ..data.datasets import build_datasets
from ..data.device_batch import PackedNet, host_view, pack_targets, to_devices
from ..data.image_cache import enable_cache
from ..data.loader import TrainLoader, make_train_loader, mixup_sample
from ..data.sampling import EpochPlan, sample_rng
from ..data.targets import yolo3_assigned
from ..data.transforms import YOLO3FastTrainTransform
from ..model_zoo import get_model
from . import host_wrap
from .machine import rerun_with_environment

__all__ = ['STAGES', 'parse_args', 'bench_stages', 'bench_main', 'bench_in_step',
           'bench_rounding', 'bench_cache', 'thread_environment', 'main']
STAGES = ('decode', 'augment', 'targets', 'batchify', 'transfer')
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the transforms' defaults


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--network', default='yolo3_darknet53_voc')
    parser.add_argument('--size', type=int, default=416, help='network input size')
    parser.add_argument('--image-size', default='500x375', help='source JPEG WxH (VOC-like)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds (median)')
    parser.add_argument('--stage-images', type=int, default=16,
                        help='images per round and pipeline for the stage costs')
    parser.add_argument('--main-batches', type=int, default=8,
                        help='batches per round and loader for the main-process cost')
    parser.add_argument('--workers', default='1,2', help='worker counts for the loaders')
    parser.add_argument('--target-ips', type=float, default=0,
                        help='img/s to size a machine for (0: skip the sizing)')
    parser.add_argument('--wrap-rounds', type=int, default=200,
                        help='interleaved rounds of the array-wrapping routes (0: skip)')
    parser.add_argument('--all-threads', action='store_true',
                        help='let MXNet and OpenCV use all cores (default: one thread)')
    return parser.parse_args(argv)


def bench_set(args):
    """The synthetic JPEG set used by every measurement (made once in the temp folder)."""
    width, height = (int(v) for v in args.image_size.lower().split('x'))
    root = os.path.join(tempfile.gettempdir(), 'gluoncv_fp16_bench_{}'.format(args.image_size))
    ensure_synthetic(root, num_train=48, num_val=4, width=width, height=height)
    return root


class _GluonCVSet(mx.gluon.data.Dataset):
    """The same files and labels, read the way GluonCV's VOCDetection reads them."""

    def __init__(self, dataset):
        self._paths = [dataset.image_path(i) for i in range(len(dataset))]
        self._labels = [dataset.label(i)[:, :5] for i in range(len(dataset))]

    def __len__(self):
        return len(self._paths)

    def __getitem__(self, idx):
        return mx.image.imread(self._paths[idx], 1), self._labels[idx]


def _clock(fn, clock=time.process_time):
    start = clock()
    out = fn()
    return clock() - start, out


# ----- 1. worker stages ------------------------------------------------------------------
class _Stages:
    """Each pipeline's stages as functions over one batch of sample indices."""

    def __init__(self, args, net, dataset):
        self.dataset, self.size, self.net = dataset, args.size, net
        self.gcv_set = _GluonCVSet(dataset)
        self.gcv_aug = YOLO3DefaultTrainTransform(args.size, args.size)
        self.gcv_targets = YOLOV3PrefetchTargetGenerator(num_class=len(net.classes))
        self.fake_x = mx.nd.zeros((1, 3, args.size, args.size))
        with autograd.train_mode():  # GluonCV's transform learns the geometry this way
            _, self.anchors, self.offsets, self.feat_maps, _, _, _, _ = net(self.fake_x)
        self.fast_aug = YOLO3FastTrainTransform(args.size, args.size)
        self.fast = YOLO3FastTrainTransform(args.size, args.size, net)
        self.gcv_batchify = Tuple(*([Stack() for _ in range(6)] + [Pad(axis=0, pad_val=-1)]))
        self.ring = BatchRing(1, batch_layout(_packed_specs(self.fast,
                                                             args.stage_images))[1])

    def gluoncv(self, indices):
        """{stage: seconds} for GluonCV's pipeline on `indices`."""
        took = dict.fromkeys(STAGES, 0.0)
        samples = []
        for i in indices:
            dt, (img, label) = _clock(lambda i=i: _waited(self.gcv_set[i]))
            took['decode'] += dt
            dt, (img, box) = _clock(lambda img=img, label=label: self._gcv_augment(img, label))
            took['augment'] += dt
            dt, targets = _clock(lambda box=box: self._gcv_target(box))
            took['targets'] += dt
            samples.append((img,) + targets)
        dt, batch = _clock(lambda: [a.wait_to_read() or a for a in self.gcv_batchify(samples)])
        took['batchify'] += dt
        took['transfer'] += _clock(lambda: _forking_dump(batch))[0]
        return took

    def _gcv_augment(self, img, label):
        img, box = self.gcv_aug(img, label)
        img.wait_to_read()
        return img, box

    def _gcv_target(self, box):
        gt_boxes = mx.nd.array(box[np.newaxis, :, :4])
        gt_ids = mx.nd.array(box[np.newaxis, :, 4:5])
        out = self.gcv_targets(self.fake_x, self.feat_maps, self.anchors, self.offsets,
                               gt_boxes, gt_ids, None)
        out = [o[0] for o in out] + [gt_boxes[0]]
        for o in out:
            o.wait_to_read()
        return tuple(out)

    def fast_pipeline(self, indices, decode=None):
        """{stage: seconds} for gluoncv_fp16's pipeline (`decode`: replaces read_image)."""
        took = dict.fromkeys(STAGES, 0.0)
        read = decode or (lambda i: imageio.read_image(self.dataset.image_path(i),
                                                       self.dataset.bad_samples))
        outs = []
        for i in indices:
            dt, img = _clock(lambda i=i: read(i))
            took['decode'] += dt
            rng = sample_rng(0, 0, i)
            dt, decisions = _clock(lambda img=img, i=i, rng=rng: self.fast.draw(
                img.shape, self.dataset.label(i), rng))
            dt2, (image, boxes) = _clock(
                lambda img=img, i=i, decisions=decisions: self.fast_aug.apply_packed(
                    img, self.dataset.label(i), decisions=decisions))
            took['augment'] += dt + dt2
            dt, targets = _clock(lambda boxes=boxes: self._packed_targets(boxes))
            took['targets'] += dt
            outs.append((image, targets, boxes[:, :4].astype(np.float32)))
        fields = train_fields(outs)
        layout = batch_layout(batch_specs(fields))[0]
        took['batchify'] += _clock(lambda: fill_batch(fields, self.ring.views(0, layout)))[0]
        took['transfer'] += _clock(lambda: pickle.dumps((('slot', 0, layout), [])))[0]
        return took


    def _packed_targets(self, boxes):
        fast = self.fast
        assigned = yolo3_assigned(fast.geometry, boxes[:, :4].astype(np.float32), boxes[:, 4])
        return pack_targets(assigned, fast.geometry.num_rows, fast.num_class, MEAN, STD)


def _waited(sample):
    sample[0].wait_to_read()
    return sample


def _packed_specs(transform, batch):
    return [((batch, 3, transform.height, transform.width), np.uint8),
            ((batch, 256, 4), np.float32), ((batch, 257, 8), np.float32)]


def _dense_specs(transform, batch):
    rows = transform.geometry.num_rows
    return ([((batch, 3, transform.height, transform.width), np.float32),
             ((batch, 256, 4), np.float32)] +
            [((batch, rows, k), np.float32) for k in (1, 2, 2, 2, transform.num_class)])


def _forking_dump(batch):
    """What a GluonCV DataLoader worker does with a finished batch."""
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(batch)
    return buf.getvalue()


def bench_stages(args, stages):
    """Median per-image milliseconds of each stage: {pipeline: {stage: ms}}."""
    cv2_read = _opencv_reader(stages.dataset)
    pipelines = {'gluoncv': stages.gluoncv, 'gluoncv_fp16': stages.fast_pipeline,
                 'decode_before': lambda idx: stages.fast_pipeline(idx, decode=cv2_read)}
    rounds = {name: [] for name in pipelines}
    n = len(stages.dataset)
    for r in range(args.rounds + 1):  # round 0 warms up (allocations, lazy imports)
        indices = [(r * args.stage_images + k) % n for k in range(args.stage_images)]
        for name, run in pipelines.items():
            took = run(indices)
            if r:
                rounds[name].append({k: v * 1e3 / len(indices) for k, v in took.items()})
    return {name: {s: float(np.median([t[s] for t in runs])) for s in STAGES}
            for name, runs in rounds.items()}


def _opencv_reader(dataset):
    """Today's decode before simplejpeg: the OpenCV path of imageio, for the ratio."""
    def read(i):
        saved, imageio.simplejpeg = imageio.simplejpeg, None
        try:
            return imageio.read_image(dataset.image_path(i), dataset.bad_samples)
        finally:
            imageio.simplejpeg = saved
    return read


# ----- 2. main process ---------------------------------------------------------------------
def _endless(loader):
    epoch = 0
    while True:
        if hasattr(loader, 'set_epoch'):
            loader.set_epoch(epoch)
        for batch in loader:
            yield batch
        epoch += 1


class _MainProcess:
    """One loader kept running across rounds; measures its main-process CPU per image."""

    def __init__(self, loader):
        self.loader, self.batches, self.copies = loader, _endless(loader), {}
        next(self.batches)  # start-up (worker pool) is not per-image cost

    def measure(self, count):
        """Per image over `count` batches: receive, enqueue and copy ms, MB, and the
        device-side ms when the device is this CPU (see :func:`print_main`)."""
        receive = enqueue = copy = device = 0.0
        images = nbytes = 0
        for _ in range(count):
            dt, batch = _clock(lambda: next(self.batches), time.thread_time)
            receive += dt
            # the copies to a second device context, as the trainer enqueues them (a packed
            # batch stays packed: the step's graph unpacks it, see bench_in_step)
            start = time.process_time()
            dt, _ = _clock(lambda b=batch: to_devices(b, [mx.cpu(1)], expand=False),
                           time.thread_time)
            enqueue += dt
            mx.nd.waitall()
            device += time.process_time() - start - dt
            dt, _ = _clock(lambda b=batch: self._copy(b))
            copy += dt
            images += batch[0].shape[0]
            nbytes += sum(a.size * np.dtype(a.dtype).itemsize for a in batch)
            del batch
        return tuple(v * 1e3 / images for v in (receive, enqueue, copy)) + (
            nbytes / images / 1e6, device * 1e3 / images)

    def _copy(self, batch):
        """Copy each array's bytes once (memcpy) into a buffer kept per (position, shape,
        dtype), as device buffers are reused; only the first batch of a shape allocates.

        A host-to-device copy from pageable memory costs the host a memcpy into a staging
        buffer, whatever the dtype; MXNet's own CPU-to-CPU copy is no proxy for it: it
        moves uint8 at ~1.2 GB/s against ~8 GB/s for float32 here (measured).
        """
        for k, a in enumerate(batch):
            key = (k, a.shape, a.dtype)
            if key not in self.copies:
                self.copies[key] = np.zeros(a.shape, a.dtype)
            np.copyto(self.copies[key], host_view(a))  # a view of the array's memory

    def close(self):
        self.batches.close()
        if hasattr(self.loader, 'close'):
            self.loader.close()


def _dense_task(state, items, shape, mixup, seed):
    """A worker task giving the dense batch gluoncv_fp16 sent before packing: float32
    image, gt boxes, five dense float32 targets (same samples and draws)."""
    dataset, transform = state['dataset'], state['transforms'][shape]
    outs = []
    for index, epoch in items:
        rng = sample_rng(seed, epoch, index)
        outs.append(transform.apply(*mixup_sample(dataset, index, rng, mixup), rng=rng))
    fields = [('stack', np.float32, [o[0] for o in outs]),
              ('pad', np.float32, [o[6] for o in outs])]
    fields += [('stack', np.float32, [o[k] for o in outs]) for k in range(1, 6)]
    return fields, dataset.bad_samples.take_new()


class _DenseLoader(TrainLoader):
    """The project's loader (ring, workers) sending dense float32 batches: benchmark only."""

    def __init__(self, dataset, net, batch_size, size, workers):
        transforms = {size: YOLO3FastTrainTransform(size, size, net, mixup=True)}
        super().__init__(dataset, transforms, EpochPlan(len(dataset), batch_size, seed=0),
                         size, workers, False, 10, [size], False)
        self._task = _dense_task

    def _max_batch_specs(self):
        return _dense_specs(self._transforms[self.data_shape], self.plan.batch_size)


def make_loaders(args, net, dataset, workers):
    """{name: loader} at a fixed size, batch `args.batch_size`, `workers` processes."""
    gcv = mx.gluon.data.DataLoader(
        _GluonCVSet(dataset).transform(YOLO3DefaultTrainTransform(args.size, args.size, net)),
        args.batch_size, shuffle=True, last_batch='rollover', num_workers=workers,
        batchify_fn=Tuple(*([Stack() for _ in range(6)] + [Pad(axis=0, pad_val=-1)])))
    return {'gluoncv': gcv,
            'gluoncv_fp16': make_train_loader(dataset, net, args.batch_size, args.size,
                                              num_workers=workers),
            'gluoncv_fp16 dense (before)': _DenseLoader(dataset, net, args.batch_size,
                                                        args.size, workers)}


def bench_main(args, net, dataset):
    """{(name, workers): (receive, enqueue, copy, MB, device on CPU)} ms per image,
    medians of interleaved rounds; and the load averages seen (min, max)."""
    results, loads = {}, []
    for workers in (int(w) for w in args.workers.split(',')):
        running = {name: _MainProcess(loader)
                   for name, loader in make_loaders(args, net, dataset, workers).items()}
        try:
            rounds = {name: [] for name in running}
            for _ in range(args.rounds):
                for name, run in running.items():
                    loads.append(os.getloadavg()[0])
                    rounds[name].append(run.measure(args.main_batches))
            for name, values in rounds.items():
                results[(name, workers)] = tuple(np.median(np.array(values), axis=0))
        finally:
            for run in running.values():
                run.close()
    return results, (min(loads), max(loads))


class _LossProbe(mx.gluon.HybridBlock):
    """Stands in for the net in :func:`bench_in_step`: one small reduction per input, so
    that the measured difference is the unpacking's operators, not a net's noise."""

    def hybrid_forward(self, F, *inputs):  # pylint: disable=arguments-differ
        return [F.sum(x) for x in inputs]


def bench_in_step(args, dataset, rounds=40):
    """Main-thread ms per image that unpacking a packed batch adds to the training step:
    (inside the step's graph, as the trainer does; in a call of its own before it).

    The trainer runs the unpacking inside the step's cached graph (``PackedNet``): its
    cost to the main thread is a ``PackedNet`` call on a packed part minus the same net's
    call on the part unpacked beforehand; the other figure is the unpacking's own call
    (not static, as on a GPU). The net is :class:`_LossProbe`: a YOLOv3 step's own
    main-thread time varies by more than the difference. Forward under
    ``autograd.record``, interleaved, medians.
    """
    net = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)  # for the layout
    net.initialize()
    loader = make_train_loader(dataset, net, args.batch_size, args.size)
    parts = to_devices(next(iter(loader)), [mx.cpu()], expand=False)
    dense = [arrays[0] for arrays in parts.expand(static_alloc=False)]
    probe = _LossProbe()
    probe.hybridize()
    batch, rows = parts[2][0].shape[:2]
    packed = PackedNet(probe, batch, rows - 1, parts.info)
    packed.hybridize()

    def recorded(forward):
        with autograd.record():
            return forward()

    calls = {'plain': lambda: recorded(lambda: probe(*dense)),
             'packed': lambda: recorded(lambda: packed(*[arrays[0] for arrays in parts])),
             'separate': lambda: parts.expand(static_alloc=False)}
    took = {name: [] for name in calls}
    for r in range(rounds + 1):  # round 0 builds the graphs
        for name, call in calls.items():
            mx.nd.waitall()
            dt, out = _clock(call, time.thread_time)
            mx.nd.waitall()
            del out  # freed outside the clock
            if r:
                took[name].append(dt)
    per_image = {name: np.median(values) * 1e3 / batch
                 for name, values in took.items()}
    return per_image['packed'] - per_image['plain'], per_image['separate']


# ----- 2b. what the uint8 image changes --------------------------------------------------
def bench_rounding(args, net, dataset):
    """The packed uint8 image against the float32 image of the same decisions, with mixup,
    over every sample of the set: (fraction of pixels whose float value lies outside
    [0, 255] and is clipped, worst |difference| of the others in grey levels, mean
    |difference| over all pixels in normalised units, mean |difference| of the clipped
    pixels in grey levels)."""
    transform = YOLO3FastTrainTransform(args.size, args.size, net, mean=MEAN, std=STD,
                                        mixup=True)
    mean, std = np.array(MEAN)[:, None, None], np.array(STD)[:, None, None]
    outside = total = 0
    worst, diffs, clipped = 0.0, [], []
    for index in range(len(dataset)):
        rng = sample_rng(0, 0, index)
        img, label = mixup_sample(dataset, index, rng, True)
        decisions = transform.draw(img.shape, label, rng)
        dense = transform.apply(img, label, decisions=decisions)[0]
        packed = transform.apply_packed(img, label, decisions=decisions)[0]
        pixel = dense * std * 255 + mean * 255
        inside = (pixel >= 0) & (pixel <= 255)
        unpacked = (packed / 255.0 - mean) / std
        worst = max(worst, float((np.abs(unpacked - dense) * std * 255)[inside].max()))
        diffs.append(float(np.abs(unpacked - dense).mean()))
        clipped.extend((np.abs(packed - pixel)[~inside]).tolist())
        outside += int((~inside).sum())
        total += pixel.size
    return outside / total, worst, float(np.mean(diffs)), float(np.mean(clipped or [0]))


# ----- 3. cache ------------------------------------------------------------------------------
def bench_cache(args, net, root):
    """Images decoded in epochs 0 and 1 with --cache ram and one worker."""
    train, _, _ = build_datasets('custom', root=root)
    cache = enable_cache({'train': train}, 'ram')[0]
    loader = make_train_loader(train, net, args.batch_size, args.size, num_workers=1,
                               shuffle=True, last_batch='discard')
    decoded = []
    try:
        for epoch in range(2):
            before = cache.decodes
            loader.set_epoch(epoch)
            for _ in loader:
                pass
            decoded.append(cache.decodes - before)
    finally:
        loader.close()
    return decoded, len(train)


# ----- report ------------------------------------------------------------------------------
def print_stages(costs, args):
    print('worker cost per image by stage (ms CPU, one process, {} JPEGs -> {} px, median of '
          '{} interleaved rounds)'.format(args.image_size, args.size, args.rounds))
    print('  {:<10} {:>9} {:>13} {:>7}'.format('stage', 'gluoncv', 'gluoncv_fp16', 'ratio'))
    for stage in STAGES + ('total',):
        gcv, fast = (sum(costs[p].values()) if stage == 'total' else costs[p][stage]
                     for p in ('gluoncv', 'gluoncv_fp16'))
        print('  {:<10} {:9.3f} {:13.3f} {:6.2f}x'.format(stage, gcv, fast, gcv / fast))
    before, now = costs['decode_before']['decode'], costs['gluoncv_fp16']['decode']
    print('  JPEG decode: OpenCV path (before) {:.3f} ms, simplejpeg {:.3f} ms: {:.2f}x '
          'faster'.format(before, now, before / now))


def add_in_step(results, in_step):
    """Results with the in-step column: `in_step` for the packed loader, 0 for the
    others (their batches reach the step already dense)."""
    return {(name, workers): values[:2] + (in_step if name == 'gluoncv_fp16' else 0.0,) +
            values[2:] for (name, workers), values in results.items()}


def print_main(results, loads, args):
    print('main process per image (ms CPU; {} px, batch {}, fixed size, median of {} '
          'interleaved rounds x {} batches; load average {:.1f}-{:.1f})'.format(
              args.size, args.batch_size, args.rounds, args.main_batches, *loads))
    print('  {:<28} {:>7} {:>6} {:>7} {:>7} {:>7} {:>11} {:>6} {:>6} {:>7} {:>6} '
          '{:>10}'.format('loader', 'workers', 'MB/img', 'receive', 'enqueue', 'in step',
                          'main thread', 'vs gcv', 'copy', 'process', 'vs gcv', 'device cpu'))
    for (name, workers), (receive, enqueue, in_step, copy, mb, device) in sorted(
            results.items(), key=lambda kv: kv[0][1]):
        gcv = _main_costs(results[('gluoncv', workers)])
        main_thread, process = _main_costs((receive, enqueue, in_step, copy))
        print('  {:<28} {:>7} {:6.2f} {:7.3f} {:7.3f} {:7.3f} {:11.3f} {:5.2f}x {:6.3f} '
              '{:7.3f} {:5.2f}x {:10.3f}'.format(
                  name, workers, mb, receive, enqueue, in_step, main_thread,
                  main_thread / gcv[0], copy, process, process / gcv[1], device))
    print('  receive: the main thread takes the next batch from the loader. enqueue: the main '
          'thread enqueues the batch\'s copies to a device, as the trainer does. in step: what '
          'unpacking a packed batch adds to the main thread\'s training step, where the '
          'trainer runs it inside the step\'s graph (measured once, see the line below). main '
          'thread = receive + enqueue + in step: the serial, GIL-bound part that caps one '
          'process. copy: every byte copied once (np.copyto), what a copy from pageable '
          'memory costs the host; on a GPU machine MXNet runs it on its copy threads '
          '(MXNET_GPU_COPY_NTHREADS per GPU), beside the main thread. process = main thread + '
          'copy. device cpu: the copies run on this CPU as the device.')


def _main_costs(measured):
    """(main thread, whole process) ms per image from (receive, enqueue, in step, copy,
    ...)."""
    receive, enqueue, in_step, copy = measured[:4]
    return receive + enqueue + in_step, receive + enqueue + in_step + copy


def print_sizing(costs, results, target):
    print('to feed {:.0f} img/s:'.format(target))
    for name in ('gluoncv', 'gluoncv_fp16'):
        worker_ms = sum(costs[name].values())
        main_ms, process_ms = np.max([_main_costs(v) for (n, _), v in results.items()
                                      if n == name], axis=0)
        ceiling = 1e3 / main_ms
        verdict = 'one process suffices' if ceiling >= target else \
            'needs {} processes (e.g. one per GPU with --horovod)'.format(
                int(np.ceil(target / ceiling)))
        print('  {:<13} {:6.1f} worker cores ({:.2f} ms/img) and {:.1f} cores in the main '
              'process ({:.3f} ms/img); its main thread ({:.3f} ms/img) tops out at {:6.0f} '
              'img/s: {}'.format(name, target * worker_ms / 1e3, worker_ms,
                                 target * process_ms / 1e3, process_ms, main_ms, ceiling,
                                 verdict))


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.all_threads:
        cv2.setNumThreads(1)
    net = get_model(args.network, pretrained_base=False)
    net.initialize()
    root = bench_set(args)
    dataset = build_datasets('custom', root=root)[0]
    costs = bench_stages(args, _Stages(args, net, dataset))
    print_stages(costs, args)
    results, loads = bench_main(args, net, dataset)
    in_step, separate = bench_in_step(args, dataset)
    results = add_in_step(results, in_step)
    print_main(results, loads, args)
    print('unpacking a packed batch costs the main thread {:.3f} ms per image inside the '
          'training step\'s graph, {:.3f} ms in a call of its own (forward under '
          'autograd.record, medians of 40 interleaved calls)'.format(in_step, separate))
    clipped, worst, mean_diff, clip_diff = bench_rounding(args, net, dataset)
    print('uint8 image vs float32 image, {} samples with mixup: {:.2%} of pixels outside '
          '[0, 255] (clipped, by {:.1f} grey levels on average); the others within {:.4f} '
          'grey levels; mean |difference| over all pixels {:.2e} in normalised units'.format(
              len(dataset), clipped, clip_diff, worst, mean_diff))
    decoded, count = bench_cache(args, net, root)
    print('--cache ram, 1 worker, {} images: decoded {} in epoch 0, {} in epoch 1'.format(
        count, *decoded))
    if args.target_ips > 0:
        print_sizing(costs, results, args.target_ips)
    if args.wrap_rounds > 0:
        host_wrap.main(['--rounds', str(args.wrap_rounds), '--batch-size', str(args.batch_size),
                        '--size', str(args.size)])


def thread_environment(argv):
    """{variable: value} to set before MXNet starts for the command line `argv`: one
    compute thread unless ``--all-threads`` is in it."""
    if '--all-threads' in argv:
        return {}
    return {'OMP_NUM_THREADS': '1', 'MXNET_CPU_WORKER_NTHREADS': '1'}


if __name__ == '__main__':
    rerun_with_environment('gluoncv_fp16.bench.data_pipeline',
                           thread_environment(sys.argv[1:]))
    main()
