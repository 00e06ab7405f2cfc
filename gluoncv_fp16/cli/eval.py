"""Evaluate a detector on a validation set: mAP per class, FP32 vs FP16, PR curves, JSON.

``gluoncv-fp16-eval``, ``python -m gluoncv_fp16.cli.eval`` or ``scripts/eval.py``:

    python scripts/eval.py runs/yolo3_mobilenet0.25_synthetic_best.ckpt --dtype float32,float16
    python scripts/eval.py yolo3_darknet53_voc.params --network yolo3_darknet53_voc --dataset voc
    python scripts/eval.py deploy/yolo3.onnx --dataset synthetic
    python scripts/eval.py deploy/yolo3.onnx deploy/yolo3-int8.onnx runs/best.ckpt --dtype float16

The model is a gluoncv_fp16 checkpoint, a plain .params file (GluonCV's or ours; then
--network), an MXNet export prefix, or an ONNX file. Dataset, data shape, classes and
normalisation default to what the checkpoint recorded. Writes detections_<dtype>.json
(COCO results format), pr_<class>.png, pictures_<dtype>.csv and summary.json to --out.

Beside mAP it counts the images whose demo picture would be right: at --thresh (default:
demo.py's rule, half the best score) every drawn box matches a distinct object of its
class (IoU >= 0.5) and no object is missed.
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
from ..deploy.evaluate import (COCO_STAT_NAMES, EvalError, coco_stats, evaluate,
                               load_models, model_kind, write_outputs)
from ..deploy.picture_check import check_pictures, summarise, write_csv
from ..utils.options import flag, rule, setting
from .command import Command

__all__ = ['EvalSettings', 'COMMAND', 'main', 'run']

MODEL, DATA, OUTPUT = 'model', 'validation data', 'output'


def _dtypes(text):
    return tuple(d.strip() for d in text.split(',') if d.strip()) if text else None


def _class_list(text):
    names = class_names(text)
    return list(names) if names is not None else None


@dataclass(frozen=True)
class EvalSettings:
    """The eval command's settings, each declared with its flag."""
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
                                        network=settings.network, classes=settings.classes,
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


def run(settings):
    """Evaluate with the validated `EvalSettings`; returns the exit code."""
    dtypes = list(settings.dtypes) if settings.dtypes else None
    detectors, info = _load_all(settings, dtypes)
    name, val_set = _dataset(settings, info, info.classes)
    coco = name == 'coco'
    image_ids = sorted(val_set.coco.getImgIds()) if coco else None
    records = evaluate(detectors, val_set, info, batch_size=settings.batch_size,
                       num_workers=settings.num_workers, progress=settings.progress,
                       image_ids=image_ids.__getitem__ if coco else None,
                       category_ids=val_set.contiguous_id_to_json.__getitem__ if coco
                       else None)
    os.makedirs(settings.out, exist_ok=True)
    stats = {d: coco_stats(r, val_set, os.path.join(settings.out, 'detections_{}.json'.format(d)))
             for d, r in records.items()} if coco else {}
    summary, pngs = write_outputs(records, settings.out, info.classes)
    order = list(detectors)
    print('{} on {} ({} images, {} px)'.format(', '.join(settings.models), name, len(val_set),
                                               info.data_shape))
    _print_table(info.classes, summary, order)
    for dtype in order:
        if stats:
            print('COCO {}: '.format(dtype) + ', '.join(
                '{} {:.4f}'.format(k, stats[dtype][k]) for k in COCO_STAT_NAMES))
    pictures = _check_pictures({d: records[d] for d in order}, settings.thresh, settings.out)
    with open(os.path.join(settings.out, 'summary.json'), 'w') as f:
        json.dump({'model': settings.models[0] if len(settings.models) == 1 else
                   list(settings.models), 'dataset': name, 'images': len(val_set),
                   'data_shape': info.data_shape, 'classes': info.classes,
                   'results': summary, 'coco': stats, 'pictures': pictures}, f, indent=1)
    print('wrote {} PR curves, detections JSON, pictures CSV and summary.json to {}'.format(
        len(pngs), settings.out))
    return 0


COMMAND = Command('eval', EvalSettings, (MODEL, DATA, OUTPUT), run,
                  __doc__.splitlines()[0], also='scripts/eval.py')


def main(argv=None):
    """The eval command; returns the exit code (2: a user's mistake, one line)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
