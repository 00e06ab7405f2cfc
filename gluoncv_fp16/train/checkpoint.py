"""The checkpoint format as the training code names it: :mod:`gluoncv_fp16.checkpoint`,
plus :func:`load_run_state`, which turns a checkpoint into the loop's `RunState`."""
from ..checkpoint import (STATE_VERSION_KEY, Checkpoint, CheckpointError, atomic_write,
                          initialise_with, load_model, load_params_into, read_checkpoint,
                          read_params, read_run_state_parts, remove_stale_temp_files,
                          save_checkpoint, save_run_state, save_weights, structural_params,
                          write_checkpoint)

__all__ = ['Checkpoint', 'CheckpointError', 'save_run_state', 'save_checkpoint',
           'write_checkpoint', 'load_run_state', 'read_checkpoint', 'read_params',
           'read_run_state_parts', 'save_weights', 'load_params_into', 'load_model',
           'initialise_with', 'structural_params', 'atomic_write', 'remove_stale_temp_files',
           'STATE_VERSION_KEY']


def load_run_state(path):
    """The `RunState` of a checkpoint (arrays on the CPU), or None for a file holding
    weights only (a plain ``.params`` file, or one written by :func:`save_checkpoint`).

    Raises
    ------
    CheckpointError
        If the file is missing, damaged, or its state cannot be restored.
    """
    from .state import RunState
    parts = read_run_state_parts(path)
    if parts is None:
        return None
    try:
        return RunState.from_parts(*parts)
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError("'{}' is damaged or from another version: {}".format(
            path, err)) from None
