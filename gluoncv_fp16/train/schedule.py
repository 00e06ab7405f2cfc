"""The learning-rate schedule of GluonCV's train_yolo3.py, with --warmup-lr honoured."""
from gluoncv.utils import LRScheduler, LRSequential

__all__ = ['make_lr_scheduler', 'decay_epochs']


def decay_epochs(cfg):
    """Epochs at which a 'step' schedule decays (--lr-decay-period wins if set)."""
    if cfg.lr_decay_period > 0:
        return list(range(cfg.lr_decay_period, cfg.epochs, cfg.lr_decay_period))
    return list(cfg.lr_decay_epoch)


def make_lr_scheduler(cfg, iters_per_epoch):
    """Linear warm-up from --warmup-lr to --lr, then --lr-mode for the remaining epochs.

    GluonCV's script parses --warmup-lr but always warms up from 0; here it is the
    warm-up's starting value, as its help text says.
    """
    step_epochs = [e - cfg.warmup_epochs for e in decay_epochs(cfg)]
    return LRSequential([
        LRScheduler('linear', base_lr=cfg.warmup_lr, target_lr=cfg.lr,
                    nepochs=cfg.warmup_epochs, iters_per_epoch=iters_per_epoch),
        LRScheduler(cfg.lr_mode, base_lr=cfg.lr, nepochs=cfg.epochs - cfg.warmup_epochs,
                    iters_per_epoch=iters_per_epoch, step_epoch=step_epochs,
                    step_factor=cfg.lr_decay, power=2),
    ])
