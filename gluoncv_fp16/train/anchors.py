"""The run's anchors: measured on the training boxes at start, refitted by --auto-anchor.

Every run logs the best possible recall (BPR) of the anchors it starts with on the
training boxes at ``--data-shape``. The anchors it starts with are, in order: a resumed
checkpoint's (never refitted: a resumed run is the same network), those in the
``--pretrained`` file, or GluonCV's (COCO's). With ``--auto-anchor`` and a BPR below
0.98 (not when resuming), anchors fitted to the boxes replace them when their BPR is
higher (:func:`gluoncv_fp16.data.anchors.choose_anchors`, seeded by ``--seed``).

The chosen anchors are what the network and the data workers' target generator are
built with; the checkpoints and ``.params`` files carry them, and the chief writes them
with their scores and the stock GluonCV rebuild to ``<prefix>_anchors.json``.
"""
import json
import logging

from ..checkpoint import atomic_write
from ..data.anchors import BPR_TARGET, box_sizes_at, choose_anchors, score_anchors
from ..data.report import dataset_records
from ..model_zoo.anchors import GLUONCV_ANCHORS, anchors_in_params

__all__ = ['run_anchors', 'stock_rebuild']

logger = logging.getLogger(__name__)


def stock_rebuild(model_name, classes, anchors, params_file):
    """The Python lines a stock GluonCV user runs to rebuild the network with `anchors`.

    GluonCV's named builders fix COCO's anchors (passing ``anchors=`` to them fails), so
    the rebuild goes through its general YOLOv3 builder; loading a ``.params`` file into
    the named ``*_custom`` network also restores the anchors, which the file holds.
    """
    _, backbone, _ = model_name.split('_')
    filters = [256, 128, 128] if backbone == 'mobilenet0.25' else [512, 256, 128]
    return ("from gluoncv.model_zoo.yolo.yolo3 import custom_yolov3\n"
            "net = custom_yolov3({!r}, {}, {}, [8, 16, 32], {}, '', pretrained_base=False)\n"
            "net.load_parameters({!r})".format(
                backbone, filters, [list(g) for g in anchors], list(classes), params_file))


def run_anchors(cfg, train_set, classes, start_weights=None, origin=None, log=True):
    """The anchors to build the run's network with (GluonCV format).

    Parameters
    ----------
    cfg : TrainConfig
    train_set : dataset
        The training split (its boxes, scaled to ``cfg.data_shape``).
    classes : list of str
    start_weights : dict of str -> array, optional
        Weights the run starts from (a resumed checkpoint or ``--pretrained`` file);
        their anchors, if they hold any, are the starting anchors.
    origin : str, optional
        ``'checkpoint'`` (resume: never refitted) or ``'--pretrained'``.
    log : bool
        Log and write ``<prefix>_anchors.json`` (the chief); every worker computes the
        same anchors (same boxes, same seed).
    """
    held = anchors_in_params(start_weights) if start_weights is not None else None
    anchors = held or [list(map(float, g)) for g in GLUONCV_ANCHORS]
    source = origin if held else "GluonCV's (COCO's)"
    sizes = box_sizes_at(dataset_records(train_set), cfg.data_shape)
    resumed = origin == 'checkpoint'
    choice = choose_anchors(anchors, sizes, cfg.auto_anchor and not resumed,
                            threshold=cfg.anchor_threshold, seed=cfg.seed)
    if not log:
        return choice.anchors
    before = choice.before
    logger.info('anchors: %s anchors have BPR %.4f on %d training boxes at %d px (%.2f '
                'anchors within ratio %g per box)', source, before.bpr, len(sizes),
                cfg.data_shape, before.above, cfg.anchor_threshold)
    if choice.after is not None:
        logger.info('--auto-anchor: fitted anchors have BPR %.4f (was %.4f): %s',
                    choice.after.bpr, before.bpr,
                    'using them' if choice.fitted else 'keeping the old ones')
    elif cfg.auto_anchor and resumed:
        logger.info('--auto-anchor: resuming, so the checkpoint\'s anchors are kept')
    elif cfg.auto_anchor and before.bpr < BPR_TARGET:
        logger.warning('--auto-anchor: fewer than 9 distinct box shapes of 2 px or more; '
                       'anchors kept')
    elif before.bpr < BPR_TARGET:
        logger.warning('anchors: BPR %.4f is below %.2f; --auto-anchor would fit anchors to '
                       'these boxes', before.bpr, BPR_TARGET)
    logger.info('anchors used: %s', _text(choice.anchors))
    final = score_anchors(choice.anchors, sizes, cfg.anchor_threshold)
    _write_json(cfg, classes, choice.anchors, final, source if not choice.fitted
                else '--auto-anchor')
    return choice.anchors


def _text(anchors):
    return str([list(g) for g in anchors])


def _write_json(cfg, classes, anchors, score, source):
    record = {
        'anchors': anchors, 'source': source, 'bpr': round(score.bpr, 6),
        'anchors_above_threshold': round(score.above, 4), 'threshold': cfg.anchor_threshold,
        'data_shape': cfg.data_shape, 'network': cfg.model_name, 'classes': list(classes),
        'gluoncv_rebuild': stock_rebuild(cfg.model_name, classes, anchors,
                                         cfg.run_prefix + '_best.params')}
    with atomic_write(cfg.run_prefix + '_anchors.json', 'w') as f:
        json.dump(record, f, indent=1)
