"""What several tests share: the repository root, tiny datasets (the synthetic shapes'
layout and each labelling tool's format), tiny nets and loops, and short runs of the
training command. A plain module (not collected); fixtures are in conftest.py. Tests
import from here, never from another test module or a script.
"""
import json
import os

import cv2
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from gluoncv_fp16.model_zoo import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE_CLASSES = ['circle', 'square', 'triangle']
MODEL_NAME = 'yolo3_mobilenet0.25_custom'
MODEL = {'name': MODEL_NAME, 'classes': SHAPE_CLASSES}
TARGET_NAMES = ('gt_boxes', 'obj_t', 'centers_t', 'scales_t', 'weights_t', 'clas_t')


def child_env(**extra):
    """os.environ with this checkout first on PYTHONPATH, for a child process."""
    path = [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path), **extra)


# ----- datasets ------------------------------------------------------------------------------
# Each image: (width, height, boxes [x1, y1, x2, y2, class]) in continuous pixels; the
# third has no boxes (a background image).
SAMPLES = [
    (96, 64, [[4, 6, 40, 50, 0], [50, 10, 90, 60, 2]]),
    (64, 80, [[10, 20, 30, 70, 1]]),
    (72, 72, []),
    (80, 64, [[0, 0, 80, 64, 2], [20, 10, 30, 25, 0]]),
]
CLASSES = ('cat', 'dog', 'bird')


def sample_image(k, width, height):
    rng = np.random.RandomState(k)
    return rng.randint(0, 255, (height, width, 3)).astype(np.uint8)


def write_images(folder, names, samples=SAMPLES):
    os.makedirs(folder, exist_ok=True)
    for name, (width, height, _) in zip(names, samples):
        cv2.imwrite(os.path.join(folder, name), sample_image(names.index(name), width, height))


def coco_doc(names, categories, category_of, samples=SAMPLES, crowd=()):
    """A COCO JSON document; `category_of[class]` is the category id of a class."""
    images, annotations = [], []
    for k, (name, (width, height, boxes)) in enumerate(zip(names, samples)):
        images.append({'id': 100 + k, 'file_name': name, 'width': width, 'height': height})
        for x1, y1, x2, y2, cls in boxes:
            annotations.append({'id': len(annotations) + 1, 'image_id': 100 + k,
                                'category_id': category_of[cls], 'area': (x2 - x1) * (y2 - y1),
                                'bbox': [x1, y1, x2 - x1, y2 - y1],
                                'iscrowd': int(len(annotations) in crowd),
                                'attributes': {'occluded': False}})
    return {'images': images, 'annotations': annotations, 'categories': categories}


def dump_json(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(doc, f)
    return path


def write_cvat(root):
    """CVAT "COCO 1.0": annotations/instances_default.json, images/, ids 3, 7, 9."""
    names = ['frame_{:06d}.png'.format(k) for k in range(len(SAMPLES))]
    write_images(os.path.join(root, 'images'), names)
    categories = [{'id': i, 'name': n, 'supercategory': ''} for i, n in zip((3, 7, 9), CLASSES)]
    return dump_json(os.path.join(root, 'annotations', 'instances_default.json'),
                 coco_doc(names, categories, {0: 3, 1: 7, 2: 9}, crowd=(4,)))


def write_voc(root):
    """The same samples in a VOC-layout folder (1-based pixel corners, as VOC files)."""
    ids = ['{:04d}'.format(k) for k in range(len(SAMPLES))]
    write_images(os.path.join(root, 'JPEGImages'), [i + '.png' for i in ids])
    os.makedirs(os.path.join(root, 'Annotations'))
    for image_id, (width, height, boxes) in zip(ids, SAMPLES):
        objects = ''.join(
            '<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}'
            '</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>'.format(
                CLASSES[c], x1 + 1, y1 + 1, x2 + 1, y2 + 1) for x1, y1, x2, y2, c in boxes)
        with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
            f.write('<annotation><size><width>{}</width><height>{}</height></size>{}'
                    '</annotation>'.format(width, height, objects))
    os.makedirs(os.path.join(root, 'ImageSets', 'Main'))
    for split in ('train', 'val'):
        with open(os.path.join(root, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    return root


def write_yolo(root, names=None):
    """Ultralytics layout: train from a list file, val from a folder; names as a map; the
    background's label file missing (train) or empty (val)."""
    files = ['img{}.png'.format(k) for k in range(len(SAMPLES))]
    for split in ('train', 'val'):
        write_images(os.path.join(root, 'images', split), files)
        os.makedirs(os.path.join(root, 'labels', split))
        for name, (width, height, boxes) in zip(files, SAMPLES):
            if not boxes and split == 'train':
                continue  # missing label file: a background
            with open(os.path.join(root, 'labels', split, name[:-4] + '.txt'), 'w') as f:
                for x1, y1, x2, y2, cls in boxes:
                    f.write('{} {!r} {!r} {!r} {!r}\n'.format(
                        cls, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                        (x2 - x1) / width, (y2 - y1) / height))
    with open(os.path.join(root, 'train.txt'), 'w') as f:
        f.write(''.join('./images/train/{}\n'.format(n) for n in files))
    with open(os.path.join(root, 'data.yaml'), 'w') as f:
        f.write('path: .\ntrain: train.txt\nval: [images/val]\nnames:\n{}'.format(
            names if names is not None else
            ''.join('  {}: {}\n'.format(i, n) for i, n in enumerate(CLASSES))))
    return os.path.join(root, 'data.yaml')


def write_rec_dataset(root, count, objects, img_fmt='.png', damage=lambda split, k, packed: packed):
    """GluonCV-layout RecordIO splits ``train.rec/.idx`` and ``val.rec/.idx`` under `root`.

    Record k holds a random 48x64 image and the boxes ``objects(k)`` (rows ``[class,
    xmin, ymin, xmax, ymax]``, relative); `damage(split, k, packed)` may alter its bytes.
    """
    os.makedirs(root, exist_ok=True)
    rs = np.random.RandomState(1)
    for split in ('train', 'val'):
        rec = mx.recordio.MXIndexedRecordIO(os.path.join(root, split + '.idx'),
                                            os.path.join(root, split + '.rec'), 'w')
        for k in range(count):
            img = rs.randint(0, 255, (48, 64, 3)).astype(np.uint8)
            label = np.array([2, 5] + sum(objects(k), []), dtype=np.float32)
            packed = mx.recordio.pack_img(mx.recordio.IRHeader(0, label, k, 0), img,
                                          quality=95, img_fmt=img_fmt)
            rec.write_idx(k, damage(split, k, packed))
        rec.close()
    return root


def write_coco(root, split, images, boxes):
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    os.makedirs(os.path.join(root, split), exist_ok=True)
    entries, anns = [], []
    for k, (img, objs) in enumerate(zip(images, boxes)):
        name = '{:04d}.jpg'.format(k)
        cv2.imwrite(os.path.join(root, split, name), img)
        entries.append({'id': k + 1, 'file_name': name, 'width': img.shape[1],
                        'height': img.shape[0]})
        for x, y, w, h, cat in objs:
            anns.append({'id': len(anns) + 1, 'image_id': k + 1, 'category_id': cat,
                         'bbox': [x, y, w, h], 'area': w * h, 'iscrowd': 0})
    cats = [{'id': 3, 'name': 'cat'}, {'id': 7, 'name': 'dog'}]
    with open(os.path.join(root, 'annotations', 'instances_' + split + '.json'), 'w') as f:
        json.dump({'images': entries, 'annotations': anns, 'categories': cats}, f)


# ----- nets, batches and loops ---------------------------------------------------------------
def yolo_training_batch(net, size=64, batch=2, seed=0):
    """(image, gt_boxes, five target arrays) for `net`, built by GluonCV's own transform."""
    from gluoncv.data.batchify import Pad, Stack, Tuple
    from gluoncv.data.transforms.presets.yolo import YOLO3DefaultTrainTransform
    rng = np.random.RandomState(seed)
    transform = YOLO3DefaultTrainTransform(size, size, net)
    samples = []
    for _ in range(batch):
        img = mx.nd.array(rng.randint(0, 255, size=(size + 20, size + 10, 3)), dtype='uint8')
        label = np.array([[4, 6, 40, 50, 0], [30, 20, size, size + 10, 1]], dtype='float32')
        samples.append(transform(img, label))
    batchify = Tuple(*([Stack() for _ in range(6)] + [Pad(axis=0, pad_val=-1)]))
    # batchify returns cpu_shared arrays; a hybridized net on cpu(0) refuses them.
    image, obj, centers, scales, weights, clas, gt = [
        a.as_in_context(mx.cpu()) for a in batchify(samples)]
    return image, gt, (obj, centers, scales, weights, clas)


def random_detector(name=MODEL_NAME, classes=SHAPE_CLASSES):
    """An initialised net whose untrained scores are not all equal.

    He initialisation keeps activations O(1) through the un-updated BatchNorm statistics
    used in inference; MXNet's default init shrinks them to ~1e-6, making every score 0.25.
    """
    net = get_model(name, classes=classes, pretrained_base=False)
    net.initialize(mx.init.MSRAPrelu(factor_type='in', slope=0.0))
    net(mx.nd.zeros((1, 3, 64, 64)))
    return net


def infer_output_dtypes(net, training):
    """Symbolic type inference of the training (losses) or inference graph, data FP16."""
    data = mx.sym.var('data')
    if training:
        targets = [mx.sym.var(n) for n in TARGET_NAMES]
        with autograd.record():
            out = net(data, *targets)
    else:
        with autograd.predict_mode():
            out = net(data)
    graph = mx.sym.Group(list(out))
    types = dict({n: 'float32' for n in TARGET_NAMES}, data='float16')
    used = set(graph.list_arguments())
    _, out_types, _ = graph.infer_type(**{k: v for k, v in types.items() if k in used})
    return [np.dtype(t) for t in out_types]


class ListLoader:
    """Fixed batches; `nan_at` poisons the image of those global iterations."""

    def __init__(self, batches, nan_at=()):
        self.batches = batches
        self.nan_at = set(nan_at)
        self.served = 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.start = 0

    def set_start(self, batch):
        self.start = batch

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        start, self.start = getattr(self, 'start', 0), 0
        for batch in self.batches[start:]:
            if self.served in self.nan_at:
                batch = (batch[0] * np.nan,) + tuple(batch[1:])
            self.served += 1
            yield batch


def make_batches(count=3, seed=0):
    net = get_model(MODEL['name'], classes=SHAPE_CLASSES, pretrained_base=False)
    net.initialize()
    batches = []
    for i in range(count):
        image, gt, targets = yolo_training_batch(net, size=64, batch=2, seed=seed + i)
        batches.append((image, gt) + tuple(targets))
    return batches


def make_net(seed=7):
    mx.random.seed(seed)
    net = get_model(MODEL['name'], classes=SHAPE_CLASSES, pretrained_base=False)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 64, 64)))
    net.hybridize()
    return net


def make_trainer(net, multi_precision):
    return gluon.Trainer(net.collect_params(), 'sgd',
                         {'learning_rate': 0.001, 'momentum': 0.9, 'wd': 5e-4,
                          'multi_precision': multi_precision}, update_on_kvstore=False)


def make_loop(loader, precision='fp32', scaler=None, warmup=0, guard=None, hooks=(), net=None,
              contexts=None, batch_size=2, **options):
    from gluoncv_fp16.precision.loss_scaler import LossScaler
    from gluoncv_fp16.precision.policy import get_policy
    from gluoncv_fp16.train.loop import LoopOptions, TrainLoop
    # These runs are a few steps, too short to back off from 2^15; at initialisation
    # YOLOv3's summed loss overflows FP16 gradients even at scale 1 (measured), so start low.
    scaler = scaler or (LossScaler('dynamic', init_scale=0.25) if precision == 'fp16'
                        else LossScaler('none'))
    return TrainLoop(net or make_net(), contexts or [mx.cpu()], loader, make_trainer, scaler,
                     get_policy(precision), hooks,
                     LoopOptions(batch_size, fp32_warmup_epochs=warmup, nan_guard=guard,
                                 **options))


# ----- the training command --------------------------------------------------------------
def small_args(data_root, out, *extra):
    """A GluonCV-style command line sized for a 2-core CPU test."""
    return ['--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '4',
            '--dataset', 'synthetic', '--dataset-root', data_root, '-j', '0', '--gpus', '',
            '--save-prefix', str(out) + os.sep, '--no-random-shape', '--log-interval', '1',
            '--no-plots', *extra]


def run_cli(argv, capsys):
    from gluoncv_fp16.cli import train as train_cli
    code = train_cli.main(argv)
    return code, capsys.readouterr()


class ShardConcat:
    """Step i: worker 0's batch i followed by worker 1's batch i (gt boxes padded)."""

    def __init__(self, loaders):
        self.loaders = loaders

    def set_epoch(self, epoch):
        for loader in self.loaders:
            loader.set_epoch(epoch)

    def __len__(self):
        return min(len(loader) for loader in self.loaders)

    def __iter__(self):
        for parts in zip(*self.loaders):
            yield tuple(_concat([p[i] for p in parts], pad=(i == 1)) for i in range(len(parts[0])))


def _concat(arrays, pad):
    arrays = [a.asnumpy() for a in arrays]
    if pad:  # gt boxes (B, N_k, 4): pad every part to the largest N with -1, like the loader
        n = max(a.shape[1] for a in arrays)
        arrays = [np.concatenate([a, -np.ones((a.shape[0], n - a.shape[1]) + a.shape[2:],
                                              a.dtype)], axis=1) for a in arrays]
    return mx.nd.array(np.concatenate(arrays, axis=0), dtype=arrays[0].dtype)


def train_on_two_contexts(data_root, out, argv):
    """Train `argv` (a CLI run on cpu:0,cpu:1) in this process with context k fed worker
    k's shard of the synthetic set, as 2 workers of half the batch each would read it;
    returns the loop."""
    from gluoncv_fp16.cli import train as train_cli
    from gluoncv_fp16.data.datasets import build_datasets
    from gluoncv_fp16.data.loader import make_train_loader
    from gluoncv_fp16.train.build import build_training
    os.makedirs(str(out), exist_ok=True)
    cfg = train_cli.make_config(train_cli.parse_args(argv))
    loop, start = build_training(cfg)
    train_set, _, classes = build_datasets('synthetic', root=data_root)
    shape_net = get_model(cfg.model_name, classes=classes, pretrained_base=False)
    shape_net.initialize()
    loop.loader = ShardConcat([
        make_train_loader(train_set, shape_net, cfg.batch_size // 2, cfg.data_shape,
                          seed=cfg.seed, num_parts=2, part_index=k) for k in range(2)])
    loop.train(start, cfg.epochs, max_iters=cfg.max_iters)
    return loop
