"""Evaluate a detector on a validation set: mAP per class, FP32 vs FP16, PR curves, JSON.

``gluoncv-fp16-eval``, ``python -m gluoncv_fp16.cli.eval`` or ``scripts/eval.py``:

    python scripts/eval.py runs/yolo3_mobilenet0.25_synthetic_best.ckpt --dtype float32,float16
    python scripts/eval.py yolo3_darknet53_voc.params --network yolo3_darknet53_voc --dataset voc
    python scripts/eval.py deploy/yolo3.onnx --dataset synthetic
    python scripts/eval.py runs/cvat_yolo3_darknet53_coco-json_best.ckpt \
        --val-json export/annotations/instances_test.json
    python scripts/eval.py deploy/yolo3.onnx deploy/yolo3-int8.onnx runs/best.ckpt --dtype float16

The model is a gluoncv_fp16 checkpoint, a plain .params file (GluonCV's or ours; then
--network), an MXNet export prefix, or an ONNX file. The dataset flags are training's
(:mod:`.dataset_flags`); each one not given, the data shape, classes and normalisation
default to what the checkpoint recorded. Writes detections_<dtype>.json
(COCO results format), pr_<class>.png, pictures_<dtype>.csv, confusion_<dtype>.csv/.png,
class_scores_<dtype>.csv and summary.json to --out.

Beside mAP it counts the images whose demo picture would be right: at --thresh (default:
demo.py's rule, half the best score) every drawn box matches a distinct object of its
class (IoU >= 0.5) and no object is missed. At the same threshold it builds the
confusion matrix (classes plus background, boxes matched to objects at IoU >= 0.5) and
each class's precision, recall and F1. COCO sets also get pycocotools' AP, AP50, AP75
and AP for small, medium and large objects (the registry's ``coco_metrics`` kinds).
With --bootstrap N (default 200) each dtype's mAP gets its sampling error over images:
the sd and 95% interval of the mAP over N resamples of the images
(:mod:`gluoncv_fp16.data.map_bootstrap`).
"""
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

from ..data.map_bootstrap import bootstrap_map, describe_samples
from ..data.options import data_side_problem, num_workers_problem
from ..data.registry import dataset_kind
from ..deploy.confusion import write_confusion
from ..deploy.evaluate import (COCO_STAT_NAMES, EvalError, coco_metrics, coco_stats,
                               evaluate, load_models, model_kind, write_outputs)
from ..deploy.picture_check import check_pictures, summarise, write_csv
from ..utils.options import flag, rule, setting
from .command import Command
from .dataset_flags import checkpoint_data, dataset_settings

__all__ = ['EvalSettings', 'COMMAND', 'main', 'run']

MODEL, DATA, OUTPUT = 'model', 'validation data', 'output'


def _dtypes(text):
    return tuple(d.strip() for d in text.split(',') if d.strip()) if text else None


@dataclass(frozen=True)
class EvalSettings(dataset_settings('EvalDataSettings', DATA)):
    """The eval command's settings, each declared with its flag; the dataset flags
    (and --classes) are training's (:mod:`.dataset_flags`)."""
    models: Tuple[str, ...] = setting(
        flag('model', group=MODEL, metavar='MODEL', nargs='+',
             help='checkpoint, .params file, export prefix or .onnx file; several: '
                  'evaluated side by side on the same images (e.g. the FP32 and INT8 .onnx '
                  'exports and the checkpoint with --dtype float16)'),
        convert=lambda names: tuple(names or ()))
    dtypes: Optional[Tuple[str, ...]] = setting(
        flag('--dtype', group=MODEL,
             help='float32, float16 or float32,float16 (both on the same batches); '
                  "default float32, or an export's own dtype"),
        convert=_dtypes)
    network: Optional[str] = setting(
        flag('--network', group=MODEL, help='model name, for a plain .params file'))
    data_shape: Optional[int] = setting(
        flag('--data-shape', group=MODEL, type=int,
             help="input side (default: the checkpoint's training size, else 416)"),
        check=lambda v: data_side_problem(v, optional=True))
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
    bootstrap: int = setting(
        flag('--bootstrap', group=OUTPUT, default=200, metavar='N',
             help="resamples of the images for the mAP's sampling error (sd and 95 percent "
                  'interval; seeded, so every model evaluated on one set gets the same '
                  'resamples); 0: off'),
        check=rule(lambda v: v >= 0, '--bootstrap must be 0 (off) or a number of '
                   'resamples, got {}'))
    out: str = setting(flag('--out', group=OUTPUT, default='eval_out', help='output folder'))
    progress: bool = setting(flag('--no-progress', group=OUTPUT, switch=True,
                                  help='no progress bar'),
                             convert=lambda off: not off)


def _print_table(classes, summary, dtypes):
    """AP per class and mAP per model; with several, each one's difference to the first."""
    head = ['class'] + ['AP ' + d for d in dtypes]
    head += ['{} - {}'.format(d, dtypes[0]) for d in dtypes[1:]]
    print(' | '.join(head))
    rows = [(name, [summary[d]['aps'][c] for d in dtypes]) for c, name in enumerate(classes)]
    rows.append(('mAP', [summary[d]['map'] for d in dtypes]))
    for name, values in rows:
        cells = [name] + ['{:.4f}'.format(v) if not math.isnan(v) else 'n/a' for v in values]
        cells += ['{:+.4f}'.format(v - values[0]) for v in values[1:]]
        print(' | '.join(cells))


def _load_all(settings, dtypes):
    """({label: Detector}, ModelInfo) of every model given; --dtype applies to the weights
    files (an export runs in its own precision), labels are the precisions ('int8' for an
    INT8 export) or, when two models share one, 'precision@file'."""
    detectors, info = {}, None
    for model in settings.models:
        found, model_info = load_models(model, dtypes if len(settings.models) == 1 or
                                        model_kind(model) == 'weights' else None,
                                        network=settings.network,
                                        classes=list(settings.classes) if settings.classes
                                        else None,
                                        data_shape=settings.data_shape)
        if info is not None and (model_info.classes != info.classes or
                                 model_info.data_shape != info.data_shape):
            raise EvalError("'{}' predicts {} at {} px but '{}' {} at {} px; compare models "
                            "of the same classes and input size".format(
                                model, ','.join(model_info.classes), model_info.data_shape,
                                settings.models[0], ','.join(info.classes), info.data_shape))
        if info is None or (not info.config and model_info.config):
            info = model_info  # a checkpoint records its dataset; an export does not
        for label, detector in found.items():
            if label in detectors:
                label = '{}@{}'.format(label, os.path.basename(model))
            detectors[label] = detector
    return detectors, info


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


def _bootstrap(records, classes, images, resamples):
    """Per column (a dtype, or a model) :func:`.map_bootstrap.bootstrap_map`, the same
    resamples for every column; with two columns the second minus the first, resample
    by resample."""
    if not resamples:
        return {}, None
    found = {d: bootstrap_map(r.detections, r.truth, len(classes), resamples,
                              num_images=images) for d, r in records.items()}
    order = list(records)
    difference = None
    if len(order) == 2:
        first, second = (found[d]['samples'] for d in order)
        difference = dict(describe_samples([b - a for a, b in zip(first, second)]),
                          of='{} - {}'.format(order[1], order[0]),
                          map=found[order[1]]['map'] - found[order[0]]['map'])
    print('mAP over image resamples ({} draws of the {} images, seed {}):'.format(
        resamples, images, next(iter(found.values()))['seed']))
    rows = [(d, f) for d, f in found.items()] + ([(difference['of'], difference)]
                                                 if difference else [])
    for name, f in rows:
        signed = '{:+.4f}' if f is difference else '{:.4f}'
        print('  {}: {}, sd {:.4f}, 95% interval {}'.format(
            name, signed.format(f['map']), f['sd'], '-' if f['ci95'] is None else
            '[{}, {}]'.format(*(signed.format(v) for v in f['ci95']))))
    return found, difference


def run(settings):
    """Evaluate with the validated `EvalSettings`; returns the exit code."""
    dtypes = list(settings.dtypes) if settings.dtypes else None
    detectors, info = _load_all(settings, dtypes)
    data, val_set = checkpoint_data(settings, info.config, info.classes)
    name, kind = data.dataset, dataset_kind(data.dataset)
    # a set read as GluonCV reads COCO keeps its ground truth as a pycocotools COCO,
    # maps its classes to category ids (``contiguous_id_to_json``) and lists its samples
    # in sorted image-id order: it is scored against that file, boxes with inclusive
    # ends; other COCO-metric sets are scored against the ground truth as read
    # (DetectionRecord.coco_ground_truth)
    coco = kind.gluoncv_coco
    image_ids = sorted(val_set.coco.getImgIds()) if coco else None
    records = evaluate(detectors, val_set, info, batch_size=settings.batch_size,
                       num_workers=settings.num_workers, progress=settings.progress,
                       image_ids=image_ids.__getitem__ if coco else None,
                       category_ids=val_set.contiguous_id_to_json.__getitem__ if coco
                       else None)
    os.makedirs(settings.out, exist_ok=True)
    stats = {d: coco_stats(r, val_set,
                           os.path.join(settings.out, 'detections_{}.json'.format(d)),
                           inclusive=True)
             for d, r in records.items()} if coco else {
                 d: coco_metrics(r.coco_ground_truth(), r.coco_json())
                 for d, r in records.items()} if kind.coco_metrics else {}
    summary, pngs = write_outputs(records, settings.out, info.classes)
    order = list(detectors)
    print('{} on {} ({} images, {} px{})'.format(
        ', '.join(settings.models), name, len(val_set), info.data_shape,
        '; the EMA weights the run validated' if info.weights_kind == 'ema' else ''))
    _print_table(info.classes, summary, order)
    for dtype in order:
        if stats:
            print('COCO {}: '.format(dtype) + ', '.join(
                '{} {:.4f}'.format(k, stats[dtype][k]) for k in COCO_STAT_NAMES))
    boot, boot_difference = _bootstrap({d: records[d] for d in order}, info.classes,
                                       len(val_set), settings.bootstrap)
    for dtype, found in boot.items():
        summary[dtype]['bootstrap'] = found
    pictures = _check_pictures({d: records[d] for d in order}, settings.thresh, settings.out)
    confusion = _confusion({d: records[d] for d in order}, pictures, info.classes,
                           settings.out)
    with open(os.path.join(settings.out, 'summary.json'), 'w') as f:
        json.dump({'model': settings.models[0] if len(settings.models) == 1 else
                   list(settings.models), 'dataset': name, 'images': len(val_set),
                   'data_shape': info.data_shape, 'classes': info.classes,
                   'results': summary, 'bootstrap_difference': boot_difference,
                   'coco': stats, 'pictures': pictures,
                   'confusion': confusion}, f, indent=1)
    print('wrote {} PR curves, detections JSON, pictures CSV, confusion matrices and '
          'summary.json to {}'.format(len(pngs), settings.out))
    return 0


COMMAND = Command('eval', EvalSettings, (MODEL, DATA, OUTPUT), run,
                  __doc__.splitlines()[0], also='scripts/eval.py', notes={DATA: (
                      "Training's dataset flags (the same declarations). Without --dataset, "
                      "or with the checkpoint's, each flag not given takes the value the "
                      "checkpoint recorded, so a model is evaluated on its own validation "
                      "split with no flag; another --dataset takes only the flags given. "
                      "Built as training builds it (docs/your_data.md).")})


def main(argv=None):
    """The eval command; returns the exit code (2: a user's mistake, one line)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
