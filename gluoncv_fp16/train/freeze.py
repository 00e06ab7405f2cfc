"""Frozen backbone stages (``--freeze backbone`` / ``--freeze N``), as YOLOv5's --freeze.

What a stage is: GluonCV's YOLOv3 cuts its backbone into the three blocks of
``net.stages``, each ending at a feature map the detection heads read (strides 8, 16
and 32): for darknet53 ``features[:15]``, ``[15:24]``, ``[24:]``; for the MobileNets
``features[:33]``, ``[33:69]``, ``[69:-2]``. ``--freeze N`` freezes the first N of them,
``--freeze backbone`` all three; the heads (``yolo_blocks``, ``transitions``,
``yolo_outputs``) always train.

Frozen means, in every precision mode (FP32, FP16, AMP, an FP32 warm-up then FP16):

* ``grad_req`` 'null': no gradient is computed, all-reduced or checked, the trainer and
  the loss scaler pass the parameters by, and they get no optimizer state -- so no FP16
  master either: the loop keeps their FP32 value as loaded (`TrainLoop.fp32_weights`),
  which is what checkpoints, precision switches and rollbacks use;
* the BatchNorm layers of frozen stages normalise with their running statistics, as at
  inference (``use_global_stats``), so the statistics stay as loaded too.

The feature ``freeze`` is built on every worker (each must freeze the same parameters)
when the network exists and before the loop and its trainer do: they read ``grad_req``
when they are made. What it froze is in the run state; a checkpoint is resumed only
with the same ``--freeze`` (one line otherwise): to change what is frozen, start a new
run from the checkpoint's weights with ``--pretrained``.
"""
import logging

import numpy as np
from mxnet.gluon import nn

from ..errors import ConfigError
from ..mxnet_compat import use_running_statistics
from .features import feature
from .loop import HookBase

__all__ = ['FreezeHook', 'BACKBONE_STAGES', 'parse_freeze', 'freeze_problem',
           'freeze_stages']

logger = logging.getLogger(__name__)

BACKBONE_STAGES = 3  # len(net.stages) of every GluonCV YOLOv3 backbone (darknet53, MobileNet)


def parse_freeze(text):
    """``--freeze`` as typed -> the number of leading backbone stages to freeze (0: none)."""
    value = str(text).strip().lower()
    if value == 'backbone':
        return BACKBONE_STAGES
    if value.isdigit():
        return int(value)
    raise ConfigError("--freeze {!r}: give backbone (all {} backbone stages) or the number of "
                      "leading backbone stages to freeze, 1-{} (0: none)".format(
                          text, BACKBONE_STAGES, BACKBONE_STAGES))


def freeze_problem(stages):
    """The one-line message when `stages` cannot be frozen, else None."""
    if 0 <= stages <= BACKBONE_STAGES:
        return None
    return ("--freeze {}: YOLOv3's backbone has {} stages (net.stages); give 1-{}, or "
            "backbone for all of them (0: none)".format(stages, BACKBONE_STAGES,
                                                       BACKBONE_STAGES))


def freeze_stages(net, count):
    """Freeze the first `count` blocks of ``net.stages`` (see the module docstring).

    Returns
    -------
    (int, int, int)
        Parameter arrays frozen, their number of values, BatchNorm layers switched to
        running statistics.
    """
    available = len(net.stages)
    if not 1 <= count <= available:
        raise ValueError("cannot freeze {} stages: the network has {}".format(count,
                                                                            available))
    arrays, values, norms = 0, 0, []
    for index in range(count):
        stage = net.stages[index]
        for param in stage.collect_params().values():
            if param.grad_req != 'null':
                arrays += 1
                values += int(np.prod(param.shape))
                param.grad_req = 'null'
        stage.apply(lambda block: norms.append(block)
                    if isinstance(block, nn.BatchNorm) else None)
    for norm in norms:
        use_running_statistics(norm)
    return arrays, values, len(norms)


@feature('freeze', switch='freeze')
class FreezeHook(HookBase):
    """Freezes the first `stages` backbone stages of `net` when made; keeps what it froze
    in the run state so that a resume checks it.

    Parameters
    ----------
    net : YOLOV3
        The training network, before the loop is built on it.
    stages : int
        1 .. ``len(net.stages)``.
    """
    name = 'freeze'

    def __init__(self, net, stages):
        self.stages = int(stages)
        self.arrays, self.values, norms = freeze_stages(net, self.stages)
        logger.info('--freeze %d: backbone stage%s of %d frozen (net.stages[:%d]: %s '
                    'parameters in %d arrays); their %d BatchNorm layers use running '
                    'statistics', self.stages,
                    ' 1' if self.stages == 1 else 's 1-{}'.format(self.stages),
                    len(net.stages), self.stages, '{:,}'.format(self.values), self.arrays,
                    norms)

    @classmethod
    def from_config(cls, cfg, context):
        if not (cfg.uses_pretrained_base or cfg.pretrained or cfg.resume):
            logger.warning('--freeze %d: the backbone starts from random weights (no '
                           'pretrained base, no --pretrained) and stays so; its BatchNorm '
                           'layers keep their initial statistics', cfg.freeze)
        return cls(context.net, cfg.freeze)

    def state_dict(self):
        return {'stages': self.stages, 'arrays': self.arrays, 'values': self.values}

    def check_resume(self, state):
        frozen = (state or {}).get('stages', 0)
        if frozen == self.stages:
            return None
        return ("was trained with {}, this run has --freeze {}; resume with the same "
                "--freeze, or start a new run from its weights with --pretrained".format(
                    '--freeze {}'.format(frozen) if frozen else 'no --freeze', self.stages))
