"""Training's dataset flags in the commands that work on a trained model, defaulting to
the data its checkpoint recorded.

The flags (``--dataset``, ``--dataset-root``, ``--train-json``, ``--val-json``,
``--image-root``, ``--data``, ``--classes``) are the fields `DATASET_FIELDS` of
:class:`~gluoncv_fp16.train.config.TrainConfig`, redeclared by reference
(:func:`~gluoncv_fp16.utils.options.redeclared`): the same names, help, conversion and
checks, with no default of their own. :func:`checkpoint_data` fills in what was not
given from the checkpoint's config and builds the datasets with training's builder, so
a model is evaluated on the data it was trained on without retyping its flags.
"""
import dataclasses

from ..data.registry import dataset_kind
from ..errors import ConfigError, EvalError
from ..train.config import DATASET_FIELDS, TrainConfig, dataset_config
from ..utils.options import redeclared

__all__ = ['dataset_settings', 'checkpoint_data_config', 'checkpoint_data',
           'DEFAULT_DATASET']

# the dataset of a model that recorded none (a plain .params file, an export)
DEFAULT_DATASET = 'voc'

_FROM_CHECKPOINT = "; default: the checkpoint's"
_NOTES = {'dataset': "; default: the checkpoint's, else " + DEFAULT_DATASET,
          'classes': "; here the model's classes by default (a plain .params file needs "
                     "them)"}


def dataset_settings(class_name, group):
    """A frozen dataclass holding training's dataset fields, listed in `group` and None
    unless given: the base of a command's settings class."""
    fields = dataclasses.make_dataclass(
        class_name, [redeclared(TrainConfig, name, optional=True, group=group, default=None,
                                note=_NOTES.get(name, _FROM_CHECKPOINT))
                     for name in DATASET_FIELDS], frozen=True)
    fields.__module__ = __name__
    return fields


def checkpoint_data_config(settings, recorded, model_classes):
    """The validated `TrainConfig` of the data to evaluate on.

    ``--dataset`` is the one given, else the recorded one (else `DEFAULT_DATASET`). On the
    recorded dataset every flag not given takes its recorded value; on another one, only
    the flags given count. A kind that reads ``--classes`` gets `model_classes`, so that
    its classes are the model's.

    Parameters
    ----------
    settings : object
        Has the `DATASET_FIELDS` as attributes (None: not given).
    recorded : mapping
        The checkpoint's config (empty for a plain file or an export).
    model_classes : sequence of str

    Raises
    ------
    EvalError
        A flag or a recorded value that training would refuse; the line says which values
        came from the checkpoint.
    """
    name = settings.dataset or recorded.get('dataset') or DEFAULT_DATASET
    given = {k: getattr(settings, k) for k in DATASET_FIELDS[1:]
             if getattr(settings, k) is not None}
    inherited = {k: recorded[k] for k in DATASET_FIELDS[1:]
                 if recorded.get(k) is not None and k not in given} \
        if name == recorded.get('dataset') else {}
    values = dict(inherited, **given, dataset=name)
    inherited.pop('classes', None)  # the model's classes count, not the recorded flag
    if settings.dataset is None and recorded.get('dataset'):
        inherited = dict(dataset=name, **inherited)
    try:
        reads_classes = '--classes' in dataset_kind(name).reads  # recorded: not checked yet
        values['classes'] = list(model_classes) if reads_classes else None
        return dataset_config(values)
    except (ConfigError, ValueError) as err:
        if not inherited:
            raise EvalError(str(err)) from None
        raise EvalError('{} (the checkpoint recorded {}; give the flags to read the data '
                        'elsewhere)'.format(err, ', '.join(
                            '{}={}'.format(k, inherited[k]) for k in inherited))) from None


def checkpoint_data(settings, recorded, model_classes):
    """``(config, val_set)``: :func:`checkpoint_data_config` and the validation set built
    by training's builder, its classes checked against the model's.

    Raises
    ------
    EvalError
        Unusable flags or data (one line), or a dataset whose classes are not the model's.
    """
    from ..train.build import build_data
    cfg = checkpoint_data_config(settings, recorded, model_classes)
    try:
        _, val_set, found = build_data(cfg)
    except ConfigError as err:
        raise EvalError('--dataset {}: {}'.format(cfg.dataset, err)) from None
    if list(found) != list(model_classes):
        raise EvalError("the model predicts {} classes ({}) but the {} validation set has {} "
                        "({}); evaluate on the data it was trained for".format(
                            len(model_classes), ','.join(model_classes[:5]), cfg.dataset,
                            len(found), ','.join(found[:5])))
    return cfg, val_set
