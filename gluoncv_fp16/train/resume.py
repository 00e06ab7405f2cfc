"""Continue a run from a checkpoint: the run state, or weights only from a .params file."""
import logging
import os

from .checkpoint import CheckpointError, load_params_into, load_run_state, read_params
from .state import check_compatible

__all__ = ['resume_from', 'newest_readable_checkpoint']

logger = logging.getLogger(__name__)


def newest_readable_checkpoint(prefix):
    """`--resume auto`: the newest checkpoint of the run at `prefix` that reads.

    Candidates are ``_last.ckpt`` and ``_best.ckpt``, newest run state first. A damaged
    one is skipped with one log line saying why. Returns ``(path, state)`` or
    ``(None, None)``.
    """
    readable, skipped = [], []
    for path in (prefix + '_last.ckpt', prefix + '_best.ckpt'):
        if not os.path.isfile(path):
            continue
        try:
            state = load_run_state(path)
        except CheckpointError as err:
            skipped.append((path, str(err)))
            continue
        if state is not None:
            readable.append(((state.meta['epoch'], state.meta['iteration']), path, state))
    for path, reason in skipped:
        logger.warning('--resume auto: skipping %s: %s', path, reason)
    if not readable:
        return None, None
    _, path, state = max(readable, key=lambda item: item[0])
    return path, state


def resume_from(loop, path, model_desc, state=None):
    """Load `path` into `loop`. Returns the next epoch, or None for a weights-only file.

    A GluonCV-style ``.params`` file restores weights only (the caller's --start-epoch
    applies); a checkpoint restores the whole run state and must match `model_desc`
    (``{'name': ..., 'classes': [...]}``; ``anchors`` are the checkpoint's already).
    """
    origin = "'{}'".format(path)
    state = state or load_run_state(path)
    if state is None:
        load_params_into(loop.net, read_params(path), origin=origin)
        logger.info('loaded weights only from %s', path)
        return None
    saved = state.meta.get('model', {})
    # the network was built with the checkpoint's anchors (.anchors); name and classes
    # must be this run's
    if [saved.get('name'), saved.get('classes')] != [model_desc['name'],
                                                      model_desc['classes']]:
        raise CheckpointError(
            "{} was trained as {} with {} classes; this run builds {} with {} classes. Use "
            "the same --network/--dataset/--classes, or a fresh --save-prefix.".format(
                origin, saved.get('name'), len(saved.get('classes', [])), model_desc['name'],
                len(model_desc['classes'])))
    try:
        check_compatible(state, loop, origin)
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    loop.restore(state)
    if not loop.epoch_done:
        logger.info('resumed %s: epoch %d at batch %d, iteration %d, phase %s', path,
                    loop.epoch, loop.epoch_position, loop.iteration, loop.phase)
        return loop.epoch
    logger.info('resumed %s: epoch %d done, iteration %d, phase %s', path, loop.epoch,
                loop.iteration, loop.phase)
    return loop.epoch + 1
