"""The checkpoint format and the one model loader (imports nothing from train/ or deploy/).

:mod:`.format` reads and writes the files (zip of weights, state arrays and
``state.json``; plain ``.params`` files); :mod:`.load` reads what a file says about its
model and puts its weights into a network (eval, export, demo, resume, ``--pretrained``).
"""
from ..errors import CheckpointError
from ..model_zoo.params import Mismatch, param_mismatch, structural_params
from .format import (STATE_VERSION_KEY, Checkpoint, atomic_write, read_checkpoint,
                     read_params, read_run_state_parts, remove_stale_temp_files,
                     save_checkpoint, save_run_state, save_weights, write_checkpoint)
from .load import (DEFAULT_DATA_SHAPE, IMAGENET_MEAN, IMAGENET_STD, ModelSource,
                   initialise_with, load_model, load_params_into, read_source)

__all__ = ['Checkpoint', 'CheckpointError', 'STATE_VERSION_KEY', 'atomic_write',
           'read_checkpoint', 'read_params', 'read_run_state_parts',
           'remove_stale_temp_files', 'save_checkpoint', 'save_run_state', 'save_weights',
           'write_checkpoint', 'initialise_with', 'load_model', 'load_params_into',
           'structural_params', 'param_mismatch', 'Mismatch', 'ModelSource', 'read_source',
           'IMAGENET_MEAN', 'IMAGENET_STD', 'DEFAULT_DATA_SHAPE']
