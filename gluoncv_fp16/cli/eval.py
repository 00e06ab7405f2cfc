"""Evaluate a detector on a validation set: mAP per class, FP32 vs FP16, PR curves, JSON.

``gluoncv-fp16-eval``, ``python -m gluoncv_fp16.cli.eval`` or ``scripts/eval.py``:

    python scripts/eval.py runs/yolo3_mobilenet0.25_synthetic_best.ckpt --dtype float32,float16
    python scripts/eval.py yolo3_darknet53_voc.params --network yolo3_darknet53_voc --dataset voc
    python scripts/eval.py deploy/yolo3.onnx --dataset synthetic

The model is a gluoncv_fp16 checkpoint, a plain .params file (GluonCV's or ours; then
--network), an MXNet export prefix, or an ONNX file. Dataset, data shape, classes and
normalisation default to what the checkpoint recorded. Writes detections_<dtype>.json
(COCO results format), pr_<class>.png, pictures_<dtype>.csv, confusion_<dtype>.csv/.png,
class_scores_<dtype>.csv and summary.json to --out.

Beside mAP it counts the images whose demo picture would be right: at --thresh (default:
demo.py's rule, half the best score) every drawn box matches a distinct object of its
class (IoU >= 0.5) and no object is missed. At the same threshold it builds the
confusion matrix (classes plus background, boxes matched to objects at IoU >= 0.5) and
each class's precision, recall and F1. COCO sets also get pycocotools' AP, AP50, AP75
and AP for small, medium and large objects.
"""
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..data.datasets import DATASETS
from ..data.options import (class_names, data_side_problem, dataset_root_problem,
                            num_workers_problem)
from ..deploy.confusion import write_confusion
from ..deploy.evaluate import (COCO_STAT_NAMES, EvalError, coco_metrics, coco_stats, evaluate,
                               load_models, write_outputs)
from ..deploy.picture_check import check_pictures, summarise, write_csv
from ..utils.options import flag, rule, setting
from .command import Command

__all__ = ['EvalSettings', 'COMMAND', 'main', 'run']

MODEL, DATA, OUTPUT = 'model', 'validation data', 'output'
# datasets read from COCO-format files without a pycocotools COCO: COCO's metrics from
# the ground truth as read
COCO_FORMAT_DATASETS = ('coco-json',)


def _dtypes(text):
    return tuple(d.strip() for d in text.split(',') if d.strip()) if text else None


def _class_list(text):
    names = class_names(text)
    return list(names) if names is not None else None


@dataclass(frozen=True)
class EvalSettings:
    """The eval command's settings, each declared with its flag."""
    model: str = setting(
        flag('model', group=MODEL, metavar='MODEL',
             help='checkpoint, .params file, export prefix or .onnx file'))
    dtypes: Optional[Tuple[str, ...]] = setting(
        flag('--dtype', group=MODEL,
             help='float32, float16 or float32,float16 (both on the same batches); '
                  "default float32, or an export's own dtype"),
        convert=_dtypes)
    network: Optional[str] = setting(
        flag('--network', group=MODEL, help='model name, for a plain .params file'))
    classes: Optional[List[str]] = setting(
        flag('--classes', group=MODEL,
             help='comma-separated class names (plain .params file; custom/rec data)'),
        convert=_class_list)
    data_shape: Optional[int] = setting(
        flag('--data-shape', group=MODEL, type=int,
             help="input side (default: the checkpoint's training size, else 416)"),
        check=lambda v: data_side_problem(v, optional=True))
    dataset: Optional[str] = setting(
        flag('--dataset', group=DATA, choices=DATASETS,
             help="validation set (default: the checkpoint's, else voc)"))
    dataset_root: Optional[str] = setting(
        flag('--dataset-root', group=DATA,
             help="dataset folder (default: the checkpoint's, else the dataset's default)"),
        check=dataset_root_problem)
    batch_size: int = setting(
        flag('--batch-size', group=DATA, default=8, help='images per batch'),
        check=rule(lambda v: v > 0, '--batch-size must be positive, got {}'))
    num_workers: int = setting(
        flag('-j', '--num-workers', group=DATA, default=0,
             help='data loading worker processes (0: in the main process)'),
        check=num_workers_problem)
    thresh: Optional[float] = setting(
        flag('--thresh', group=OUTPUT, type=float,
             help='score threshold of the picture check (default: as demo.py, half the best '
                  'score over the validation set)'),
        check=rule(lambda v: v is None or 0 <= v <= 1,
                   '--thresh must be between 0 and 1, got {}'))
    out: str = setting(flag('--out', group=OUTPUT, default='eval_out', help='output folder'))
    progress: bool = setting(flag('--no-progress', group=OUTPUT, switch=True,
                                  help='no progress bar'),
                             convert=lambda off: not off)


def _dataset(settings, info, classes):
    from ..data.datasets import build_datasets
    name = settings.dataset or info.config.get('dataset') or 'voc'
    root = settings.dataset_root or (info.config.get('dataset_root')
                                 if name == info.config.get('dataset') else None)
    wanted = classes if name in ('custom', 'rec', 'synthetic') else None
    try:
        _, val_set, found = build_datasets(name, root=root, classes=wanted)
    except (ValueError, OSError) as err:
        raise EvalError('--dataset {}: {}'.format(name, err)) from None
    if list(found) != list(classes):
        raise EvalError("the model predicts {} classes ({}) but the {} validation set has {} "
                        "({}); evaluate on the data it was trained for".format(
                            len(classes), ','.join(classes[:5]), name, len(found),
                            ','.join(found[:5])))
    return name, val_set


def _print_table(classes, summary, dtypes):
    head = ['class'] + ['AP ' + d for d in dtypes]
    both = len(dtypes) == 2
    if both:
        head.append('{} - {}'.format(dtypes[1], dtypes[0]))
    print(' | '.join(head))
    rows = [(name, [summary[d]['aps'][c] for d in dtypes]) for c, name in enumerate(classes)]
    rows.append(('mAP', [summary[d]['map'] for d in dtypes]))
    for name, values in rows:
        cells = [name] + ['{:.4f}'.format(v) if not math.isnan(v) else 'n/a' for v in values]
        if both:
            cells.append('{:+.4f}'.format(values[1] - values[0]))
        print(' | '.join(cells))


def _check_pictures(records, thresh, out_dir):
    """Print and write the per-image picture check of each dtype; its summary dicts."""
    results = {}
    for dtype, record in records.items():
        used, checks = check_pictures(record, thresh)
        counts = dict(summarise(checks), threshold=used,
                      csv=write_csv(os.path.join(out_dir, 'pictures_{}.csv'.format(dtype)),
                                    checks))
        share = 100.0 * counts['right'] / counts['images'] if counts['images'] else 0.0
        print('{} pictures at score >= {:.3f}: images right: {} of {} ({:.1f}%); with a '
              'missed object {}, with an extra box {}, with a wrong class {}'.format(
                  dtype, used, counts['right'], counts['images'], share, counts['missed'],
                  counts['extra'], counts['wrong_class']))
        results[dtype] = counts
    return results


def _confusion(records, pictures, classes, out_dir):
    """Write and print each dtype's confusion matrix and per-class scores at the
    threshold its picture check used; their summary dicts."""
    results = {}
    for dtype, record in records.items():
        found = write_confusion(record, pictures[dtype]['threshold'], out_dir, dtype)
        print('{} at score >= {:.3f}, IoU >= 0.5: precision | recall | F1 per class '
              '(confusion_{}.csv/.png)'.format(dtype, found['threshold'], dtype))
        for c, name in enumerate(classes):
            print('  {} | {} | {} | {}'.format(name, *(
                'n/a' if found[k][c] is None else '{:.3f}'.format(found[k][c])
                for k in ('precision', 'recall', 'f1'))))
        missed = sum(row[-1] for row in found['matrix'][:-1])
        false_positives = sum(found['matrix'][-1][:-1])
        print('  missed objects {}, boxes on background {}'.format(missed, false_positives))
        results[dtype] = found
    return results


def run(settings):
    """Evaluate with the validated `EvalSettings`; returns the exit code."""
    dtypes = list(settings.dtypes) if settings.dtypes else None
    detectors, info = load_models(settings.model, dtypes, network=settings.network,
                                  classes=settings.classes, data_shape=settings.data_shape)
    name, val_set = _dataset(settings, info, info.classes)
    # a reader that keeps its ground truth as a pycocotools COCO (``coco``), maps its
    # classes to category ids (``contiguous_id_to_json``) and lists its samples in sorted
    # image-id order is scored against that file; COCO-format sets read otherwise are
    # scored against the ground truth as read (DetectionRecord.coco_ground_truth)
    coco = hasattr(val_set, 'coco') and hasattr(val_set, 'contiguous_id_to_json')
    image_ids = sorted(val_set.coco.getImgIds()) if coco else None
    records = evaluate(detectors, val_set, info, batch_size=settings.batch_size,
                       num_workers=settings.num_workers, progress=settings.progress,
                       image_ids=image_ids.__getitem__ if coco else None,
                       category_ids=val_set.contiguous_id_to_json.__getitem__ if coco
                       else None)
    os.makedirs(settings.out, exist_ok=True)
    stats = {d: coco_stats(r, val_set,
                           os.path.join(settings.out, 'detections_{}.json'.format(d)),
                           inclusive=name == 'coco')  # GluonCV's inclusive-end reading
             for d, r in records.items()} if coco else {
                 d: coco_metrics(r.coco_ground_truth(), r.coco_json())
                 for d, r in records.items()} if name in COCO_FORMAT_DATASETS else {}
    summary, pngs = write_outputs(records, settings.out, info.classes)
    order = list(detectors)
    print('{} on {} ({} images, {} px)'.format(settings.model, name, len(val_set),
                                               info.data_shape))
    _print_table(info.classes, summary, order)
    for dtype in order:
        if stats:
            print('COCO {}: '.format(dtype) + ', '.join(
                '{} {:.4f}'.format(k, stats[dtype][k]) for k in COCO_STAT_NAMES))
    pictures = _check_pictures({d: records[d] for d in order}, settings.thresh, settings.out)
    confusion = _confusion({d: records[d] for d in order}, pictures, info.classes,
                           settings.out)
    with open(os.path.join(settings.out, 'summary.json'), 'w') as f:
        json.dump({'model': settings.model, 'dataset': name, 'images': len(val_set),
                   'data_shape': info.data_shape, 'classes': info.classes,
                   'results': summary, 'coco': stats, 'pictures': pictures,
                   'confusion': confusion}, f, indent=1)
    print('wrote {} PR curves, detections JSON, pictures CSV, confusion matrices and '
          'summary.json to {}'.format(len(pngs), settings.out))
    return 0


COMMAND = Command('eval', EvalSettings, (MODEL, DATA, OUTPUT), run,
                  __doc__.splitlines()[0], also='scripts/eval.py')


def main(argv=None):
    """The eval command; returns the exit code (2: a user's mistake, one line)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
