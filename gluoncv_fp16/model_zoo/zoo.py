"""`get_model` / `get_model_list`: GluonCV's names, FP16-safe YOLOv3 networks.

The nine YOLOv3 names are built by GluonCV's own builders and then converted in place
(:func:`make_fp16_safe`); every other GluonCV name is passed through unchanged.
"""
import difflib
import os

import gluoncv
from gluoncv.model_zoo import model_store
from gluoncv.utils import check_sha1

from .anchors import set_anchors
from .yolo3 import make_fp16_safe
from ..errors import PretrainedWeightsUnavailable

__all__ = ['get_model', 'get_model_list', 'build_untrained', 'dataset_classes',
           'pretrained_weights_file', 'backbone_weights_file', 'PretrainedWeightsUnavailable',
           'YOLO3_MODELS', 'BACKBONES']

BACKBONES = ('darknet53', 'mobilenet1.0', 'mobilenet0.25')  # the --network names
_DATASETS = ('voc', 'coco', 'custom')
YOLO3_MODELS = tuple('yolo3_{}_{}'.format(b, d) for b in BACKBONES for d in _DATASETS)

_DEFAULT_ROOT = os.path.join('~', '.mxnet', 'models')


def get_model_list():
    """Names `get_model` builds as FP16-safe networks (all GluonCV names also work)."""
    return list(YOLO3_MODELS)


def get_model(name, **kwargs):
    """Return a GluonCV model by name; YOLOv3 names come back FP16-safe.

    Parameters
    ----------
    name : str
        A GluonCV model name, e.g. ``'yolo3_darknet53_voc'`` (case-insensitive).
    **kwargs
        As GluonCV: ``classes`` and ``transfer`` (``*_custom``), ``pretrained`` (bool,
        tag, or a path to a ``.params`` file), ``pretrained_base``, ``norm_layer``,
        ``norm_kwargs``, ``ctx``, ``root``; and ``anchors`` for YOLOv3 names (GluonCV's
        format, :mod:`gluoncv_fp16.model_zoo.anchors`; default COCO's). Keyword
        arguments that are ``None`` are dropped, so CLI defaults never override
        GluonCV's defaults.

    Raises
    ------
    ValueError
        Unknown name (the message suggests the closest names).
    PretrainedWeightsUnavailable
        Weights are needed but neither cached nor downloadable.
    """
    key = name.lower()
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    anchors = kwargs.pop('anchors', None)
    if anchors is not None:
        if key not in YOLO3_MODELS:
            raise ValueError("anchors= applies to YOLOv3 names only, not '{}'".format(name))
        return set_anchors(get_model(key, **kwargs), anchors)
    if key not in YOLO3_MODELS:
        if key not in gluoncv.model_zoo.get_model_list():
            raise ValueError(_unknown_name_message(name))
        return gluoncv.model_zoo.get_model(key, **kwargs)
    if key.endswith('_custom') and 'classes' not in kwargs:
        raise ValueError("'{}' needs classes=[...] (the names of your classes), e.g. "
                         "get_model('{}', classes=['cat', 'dog'])".format(name, key))
    pretrained = kwargs.get('pretrained', False)
    if _is_local_file(pretrained):
        return _build_from_file(key, pretrained, kwargs)
    return make_fp16_safe(_build_with_downloads(key, kwargs))


def build_untrained(name, classes=None, **kwargs):
    """The network `name` for `classes`, not initialised, nothing downloaded.

    What rebuilding a trained model needs: ``*_custom`` names take `classes`; for VOC/COCO
    names, classes that differ from the dataset's reset the class predictors.
    """
    kwargs = dict(kwargs, pretrained=False, pretrained_base=False)
    key = name.lower()
    if key.endswith('_custom') and not classes:
        raise ValueError("'{}' needs its class names (classes=[...], or --classes a,b,c "
                         "on the command line)".format(name))
    if classes and key in YOLO3_MODELS and not key.endswith('_custom'):
        if list(classes) == dataset_classes(key):
            return get_model(key, **kwargs)
        # reset_class needs initialised weights; the _custom builder makes the same
        # architecture (same parameter names) for any classes without them.
        key = key.rsplit('_', 1)[0] + '_custom'
    if classes:
        kwargs['classes'] = list(classes)
    return get_model(key, **kwargs)


def dataset_classes(name):
    """The class names a ``*_voc`` / ``*_coco`` network predicts (list of str)."""
    from gluoncv.data import COCODetection, VOCDetection
    dataset = name.lower().rsplit('_', 1)[-1]
    if dataset == 'voc':
        return list(VOCDetection.CLASSES)
    if dataset == 'coco':
        return list(COCODetection.CLASSES)
    raise ValueError("'{}' has no fixed classes (only *_voc and *_coco names do)".format(name))


def _unknown_name_message(name):
    close = difflib.get_close_matches(name.lower(), YOLO3_MODELS, n=3, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(
            name.lower(), gluoncv.model_zoo.get_model_list(), n=3, cutoff=0.6)
    hint = ("Did you mean: {}?".format(', '.join(repr(c) for c in close)) if close
            else "YOLOv3 names are yolo3_{darknet53,mobilenet1.0,mobilenet0.25}_"
                 "{voc,coco,custom}; see gluoncv_fp16.model_zoo.get_model_list().")
    return "Unknown model name {!r}. {}".format(name, hint)


def _is_local_file(pretrained):
    return isinstance(pretrained, str) and (
        os.path.sep in pretrained or pretrained.endswith('.params') or
        os.path.isfile(pretrained))


def _build_from_file(key, path, kwargs):
    """Build the architecture untrained, then load `path` (FP32 or FP16) into it."""
    if not os.path.isfile(path):
        raise FileNotFoundError("pretrained={!r}: no such file".format(path))
    ctx = kwargs.get('ctx')
    build_kwargs = dict(kwargs, pretrained=False, pretrained_base=False)
    net = make_fp16_safe(gluoncv.model_zoo.get_model(key, **build_kwargs))
    net.load_parameters(path, ctx=ctx)
    return net


def pretrained_weights_file(name, root=_DEFAULT_ROOT):
    """Path of GluonCV's published weights for `name` (e.g. ``'yolo3_darknet53_voc'``),
    downloaded into GluonCV's cache if needed.

    Raises
    ------
    PretrainedWeightsUnavailable
        GluonCV publishes none for `name`, or they are neither cached nor downloadable.
    """
    key = name.lower()
    try:
        return model_store.get_model_file(key, tag=True, root=root)
    except Exception as err:  # network errors come from requests, urllib, socket ...
        failure = _unavailable(key, [_params_file(key, True)], root, err)
        if failure is None:
            raise
        raise failure from err


def backbone_weights_file(network, root=_DEFAULT_ROOT):
    """Path of the ImageNet weights of a YOLOv3 backbone (``'darknet53'``,
    ``'mobilenet1.0'``, ``'mobilenet0.25'``), downloaded into GluonCV's cache if needed:
    what ``pretrained_base=True`` loads.

    Raises
    ------
    PretrainedWeightsUnavailable
        Neither cached nor downloadable (offline), or cached but damaged.
    """
    try:
        return model_store.get_model_file(network, root=root)
    except Exception as err:  # network errors come from requests, urllib, socket ...
        failure = _unavailable(network, [_params_file(network, True)], root, err)
        if failure is None:
            raise
        raise failure from err


def _build_with_downloads(key, kwargs):
    """GluonCV's normal download-and-cache path, with an offline error that helps."""
    needed = _weight_files_needed(key, kwargs)
    try:
        return gluoncv.model_zoo.get_model(key, **kwargs)
    except Exception as err:  # network errors come from requests, urllib, socket ...
        if not needed:
            raise
        failure = _unavailable(key, needed, kwargs.get('root', _DEFAULT_ROOT), err)
        if failure is None:
            raise
        raise failure from err


def _unavailable(key, needed, root, err):
    """The PretrainedWeightsUnavailable explaining `err`, or None if files are not why."""
    root = _cache_dir(root)
    missing = [f for f in needed if not os.path.isfile(os.path.join(root, f))]
    corrupt = [f for f in needed if f not in missing and not _intact(root, f)]
    if not missing and not corrupt:
        return None
    return PretrainedWeightsUnavailable(
        "Could not get pretrained weights for '{}' ({}). {}Download {} and put "
        "it in {} (GluonCV's cache; set root= or MXNET_HOME to use another folder), "
        "or pass pretrained=False, pretrained_base=False to train from scratch "
        "(train_yolo3.py: --no-pretrained-base)."
        .format(key, type(err).__name__, _corrupt_note(corrupt),
                ' and '.join(missing + corrupt), root),
        files=missing + corrupt, corrupt=corrupt, root=root, cause=type(err).__name__)


def _intact(root, file_name):
    """Whether a cached file matches the short SHA-1 in its name (GluonCV's own check).

    GluonCV re-downloads a cached file that fails the check, so offline a truncated
    download looks like a network error unless we say so.
    """
    short_hash = file_name[:-len('.params')].rsplit('-', 1)[-1]
    return check_sha1(os.path.join(root, file_name), short_hash)


def _corrupt_note(corrupt):
    if not corrupt:
        return ''
    return ("{} is in the cache but fails its SHA-1 check (an interrupted download?); "
            "delete it. ".format(' and '.join(corrupt)))


def _cache_dir(root):
    # Same rule as gluoncv.model_zoo.model_store.get_model_file.
    if 'MXNET_HOME' in os.environ:
        root = os.path.join(os.environ['MXNET_HOME'], 'models')
    return os.path.expanduser(root)


def _weight_files_needed(key, kwargs):
    """The `.params` file names GluonCV will look for in its cache for this call."""
    pretrained = kwargs.get('pretrained', False)
    if key.endswith('_custom'):
        transfer = kwargs.get('transfer')
        if transfer is not None:
            return [_params_file(key.rsplit('_', 1)[0] + '_' + str(transfer), True)]
        pretrained = False
    if pretrained:
        return [_params_file(key, pretrained)]
    if kwargs.get('pretrained_base', True):
        base = key.split('_')[1]
        return [_params_file(base, kwargs['pretrained_base']
                             if isinstance(kwargs.get('pretrained_base'), str) else True)]
    return []


def _params_file(name, tag):
    if isinstance(tag, str):
        return '{}-{}.params'.format(name, tag)
    try:
        return '{}-{}.params'.format(name, model_store.short_hash(name))
    except ValueError:
        raise PretrainedWeightsUnavailable(
            "GluonCV publishes no pretrained weights for '{}'. Use pretrained=False, "
            "or pretrained='path/to/your.params'.".format(name)) from None
