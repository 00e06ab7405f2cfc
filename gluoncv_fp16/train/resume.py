"""Continue a run from a checkpoint: weights, optimizer, scaler, phase, counters, RNG."""
import logging
import random

import numpy as np

from .checkpoint import CheckpointError, load_params_into, read_checkpoint

__all__ = ['resume_from', 'rng_state', 'restore_rng']

logger = logging.getLogger(__name__)


def resume_from(loop, path, model_desc):
    """Load `path` into `loop`. Returns the next epoch, or None for a weights-only file.

    A GluonCV-style ``.params`` file restores weights only (the caller's --start-epoch
    applies); a full checkpoint restores everything and must match `model_desc`
    (``{'name': ..., 'classes': [...]}``).
    """
    ckpt = read_checkpoint(path)
    origin = "'{}'".format(path)
    if not ckpt.meta:
        load_params_into(loop.net, ckpt.params, origin=origin)
        logger.info('loaded weights only from %s', path)
        return None
    saved = ckpt.meta.get('model', {})
    if saved != model_desc:
        raise CheckpointError(
            "{} was trained as {} with {} classes; this run builds {} with {} classes. Use "
            "the same --network/--dataset/--classes, or a fresh --save-prefix.".format(
                origin, saved.get('name'), len(saved.get('classes', [])), model_desc['name'],
                len(model_desc['classes'])))
    if ckpt.meta.get('phase') == 'fp16':
        loop.net.cast('float16')
    load_params_into(loop.net, ckpt.params, origin=origin)
    loop.load_state_dict(ckpt.meta, ckpt.trainer_states)
    restore_rng(ckpt.meta.get('rng'))
    logger.info('resumed %s: epoch %d done, iteration %d, phase %s', path, loop.epoch,
                loop.iteration, loop.phase)
    return loop.epoch + 1


def rng_state():
    """Python and NumPy global RNG states as JSON-able lists."""
    state = np.random.get_state()
    return {'numpy': [state[0], state[1].tolist(), int(state[2]), int(state[3]),
                      float(state[4])], 'python': _lists(random.getstate())}


def restore_rng(state):
    if not state:
        return
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(_tuples(state['python']))


def _lists(value):
    return [_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
