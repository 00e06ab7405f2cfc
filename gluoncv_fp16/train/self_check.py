"""Start-up self-check of `--fp16` / `--amp`: stop, or fall back to FP32, on disagreement.

Every FP16 path of this product is proven on CPU; a user's GPU, driver and MXNet build
are not. Before any training, one batch of the run goes through one step in FP32 and in
the chosen mode on the run's devices (:mod:`.precision_check` says how and against which
tolerances). Agreement is logged with its figures and the seconds it took. Disagreement
is one line with the figures; then the run stops (``--self-check stop``, exit 2) or
trains in FP32 instead (``--self-check fallback``). ``--no-self-check`` skips it.

It runs before MXNet AMP is switched on (AMP cannot be undone, and a fallback must
still be able to train in FP32) and leaves the run untouched: the check has its own
network copy and weights, reads the batch with the loader's per-sample generators, and
restores Python's and NumPy's global random state (MXNet's is never drawn from).
"""
import contextlib
import logging
import math
import random
import time

import numpy as np

from ..precision.policy import FULL_PRECISION, get_policy
from .precision_check import check_agreement
from ..errors import SelfCheckFailed

__all__ = ['self_check', 'check_batch', 'SelfCheckFailed', 'check_images']

logger = logging.getLogger(__name__)

# Images: 2 per device at 256 px and up (the FP32 reference must fit next to a batch
# size chosen for FP16 memory); below, as many as make the pixels of one 256 px image
# over all devices together, because a step on few small images is noisier than the FP16
# tolerance allows (measured, mobilenet0.25 at 64 px: relative gradient error 2.4e-2 with
# 2 images, 0.9e-2 - 1.2e-2 with 8; 1.0e-2 with 2 images at 320 px).
_MIN_PER_DEVICE, _PIXEL_SIDE = 2, 256


def check_images(data_shape, num_devices=1):
    """Images in the check, a multiple of `num_devices`: 16 at 64 px, 4 at 128, 2 per
    device at 256 px and up."""
    wanted = max(_MIN_PER_DEVICE * num_devices,
                 int(math.ceil((_PIXEL_SIDE / float(data_shape)) ** 2)))
    return int(math.ceil(wanted / float(num_devices))) * num_devices


@contextlib.contextmanager
def _global_rng_kept():
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def check_batch(train_set, net, data_shape, images, seed):
    """The first `images` samples of epoch 0, resized without augmentation, as the
    training loader would batch them, unpacked (dense float32 NDArrays on cpu(0))."""
    from ..data.device_batch import unpack
    from ..data.loader import make_train_loader
    loader = make_train_loader(train_set, net, images, data_shape, num_workers=0,
                               augment=False, seed=seed, last_batch='keep')
    try:
        return unpack(next(iter(loader)))
    finally:
        loader.close()


def _loss_scale(cfg, policy):
    """What the run's scaler starts with: AMP and --loss-scale dynamic are dynamic."""
    if policy.uses_amp or cfg.loss_scale == 'dynamic':
        return 'dynamic'
    return 1.0 if cfg.loss_scale == 'none' else float(cfg.loss_scale)


def self_check(cfg, policy, contexts, train_set, async_net, model_kwargs):
    """Check `policy` against FP32 on `contexts`; returns the ``(cfg, policy)`` to train.

    Parameters
    ----------
    cfg : TrainConfig
        Its ``self_check`` ('stop' | 'fallback' | 'off') decides what happens.
    policy : PrecisionPolicy
        The run's; nothing is checked for a policy that runs nothing in float16.
    contexts : list of mx.Context
    train_set, async_net
        The training set and the FP32 network the data transforms read (for one batch).
    model_kwargs : dict
        ``get_model`` arguments of the run's network (classes, ...).

    Raises
    ------
    SelfCheckFailed
        On disagreement with ``self_check='stop'``.
    """
    if not policy.runs_float16 or cfg.self_check == 'off':
        return cfg, policy
    start = time.perf_counter()
    with _global_rng_kept():
        batch = check_batch(train_set, async_net, cfg.data_shape,
                            check_images(cfg.data_shape, len(contexts)), cfg.seed)
        result = check_agreement(policy.name, cfg.model_name, model_kwargs, contexts, batch,
                                 loss_scale=_loss_scale(cfg, policy),
                                 amp_init=None if cfg.amp_fp16_ops is None else
                                 {'target_precision_ops': list(cfg.amp_fp16_ops)})
    seconds = time.perf_counter() - start
    where = '{} vs {} on {} ({} images at {} px)'.format(
        policy.name, FULL_PRECISION, result.devices, result.images, result.data_shape)
    if result.ok:
        logger.info('self-check %s: agrees, %s; took %.1f s', where, result.figures(),
                    seconds)
        return cfg, policy
    line = 'self-check {}: {} ({}; took {:.1f} s)'.format(where, result.problem,
                                                          result.figures(), seconds)
    if cfg.self_check == 'fallback':
        logger.warning('%s -- training in FP32 instead (--self-check fallback)', line)
        return (cfg.replace(precision=FULL_PRECISION, fp32_warmup_epochs=0),
                get_policy(FULL_PRECISION))
    raise SelfCheckFailed('{}. Train in FP32 (drop {}), let the run fall back to FP32 '
                          'with --self-check fallback, or skip the check with '
                          '--no-self-check; scripts/device_check.py reports this machine '
                          'in full'.format(line, policy.flag))
