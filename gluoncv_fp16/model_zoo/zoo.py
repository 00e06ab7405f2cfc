"""The network registry: `get_model` / `get_model_list` with GluonCV's names, FP16-safe.

One entry per YOLOv3 base network (:func:`register_network`, in the spirit of timm's
``register_model``): a few lines forwarding to one builder, :func:`_yolo3`, which builds
the network with GluonCV's own builder and converts it in place (:func:`make_fp16_safe`).
Each network gives three model names, ``yolo3_<network>_<classes>`` for the class sets
in `CLASS_SETS` (``yolo3_darknet53_voc``, ...). Listings (with wildcards), the
``--network`` help, the "did you mean" of an unknown name and the lists in error messages
all come from the registry. Every other GluonCV name is passed through unchanged.
"""
import collections
import difflib
import fnmatch
import os

import gluoncv
from gluoncv.model_zoo import model_store
from gluoncv.utils import check_sha1

from .anchors import set_anchors
from .yolo3 import make_fp16_safe
from ..errors import PretrainedWeightsUnavailable

__all__ = ['get_model', 'get_model_list', 'register_network', 'network_names',
           'network_problem', 'network_help', 'networks_with_weights', 'model_name',
           'build_untrained', 'dataset_classes', 'pretrained_weights_file',
           'backbone_weights_file', 'PretrainedWeightsUnavailable', 'YOLO3_MODELS',
           'CLASS_SETS', 'DEFAULT_NETWORK', 'LIGHTEST_NETWORK']

CLASS_SETS = ('voc', 'coco', 'custom')  # model-name suffixes: the classes a network predicts
_DEFAULT_ROOT = os.path.join('~', '.mxnet', 'models')

_Network = collections.namedtuple('_Network', 'name summary build')
_NETWORKS = {}  # --network name -> _Network, in registration order


def register_network(name, summary):
    """Register ``build(class_set, **kwargs)`` as the YOLOv3 network on base `name`.

    Parameters
    ----------
    name : str
        The ``--network`` name, as GluonCV spells it (``'mobilenet1.0'``).
    summary : str
        A few words for the ``--network`` help.
    """
    def register(build):
        if name in _NETWORKS:
            raise ValueError('network {!r} is registered twice'.format(name))
        _NETWORKS[name] = _Network(name, summary, build)
        return build
    return register


@register_network('darknet53', "GluonCV's default, the most accurate")
def yolo3_darknet53(class_set='voc', **kwargs):
    """YOLOv3 on Darknet-53 (GluonCV: 81.5 VOC07 mAP at 416 px)."""
    return _yolo3('darknet53', class_set, **kwargs)


@register_network('mobilenet1.0', 'faster, a little less accurate')
def yolo3_mobilenet1_0(class_set='voc', **kwargs):
    """YOLOv3 on MobileNet 1.0 (GluonCV: 75.8 VOC07 mAP at 416 px)."""
    return _yolo3('mobilenet1.0', class_set, **kwargs)


@register_network('mobilenet0.25', 'the smallest, for CPU runs and tests')
def yolo3_mobilenet0_25(class_set='voc', **kwargs):
    """YOLOv3 on MobileNet 0.25 (no published YOLOv3 weights; ImageNet backbone only)."""
    return _yolo3('mobilenet0.25', class_set, **kwargs)


DEFAULT_NETWORK = 'darknet53'       # GluonCV's train_yolo3.py default
LIGHTEST_NETWORK = 'mobilenet0.25'  # what CPU checks default to


def network_names(pattern='*'):
    """The registered ``--network`` names matching the shell-style `pattern` (a tuple,
    in registration order), e.g. ``network_names('mobilenet*')``."""
    return tuple(n for n in _NETWORKS if fnmatch.fnmatchcase(n, pattern.lower()))


def model_name(network, class_set):
    """``'yolo3_<network>_<class_set>'``, the GluonCV name."""
    return 'yolo3_{}_{}'.format(network, class_set)


def get_model_list(pattern='*'):
    """Names `get_model` builds as FP16-safe networks, matching the shell-style `pattern`
    (e.g. ``'yolo3_mobilenet*'``, ``'*_voc'``); every other GluonCV name also works."""
    names = [model_name(n, c) for n in _NETWORKS for c in CLASS_SETS]
    return [n for n in names if fnmatch.fnmatchcase(n, pattern.lower())]


YOLO3_MODELS = tuple(get_model_list())  # the registry's model names (for parametrised tests)


def _split_model_name(key):
    """``(network, class_set)`` of a registered YOLOv3 model name (lower case), or None."""
    stem, _, class_set = key.rpartition('_')
    prefix, _, network = stem.partition('_')
    if prefix == 'yolo3' and network in _NETWORKS and class_set in CLASS_SETS:
        return network, class_set
    return None


def _listing(names, last='or'):
    names = list(names)
    return names[0] if len(names) == 1 else '{} {} {}'.format(', '.join(names[:-1]), last,
                                                               names[-1])


def network_help():
    """The ``--network`` help text: every registered network with its summary."""
    return 'base network: ' + _listing('{} ({})'.format(n.name, n.summary)
                                       for n in _NETWORKS.values())


def network_problem(name, flag='--network'):
    """None for a registered network name, else the one-line message saying so, with
    the closest names and every valid one."""
    if name in _NETWORKS:
        return None
    close = difflib.get_close_matches(str(name).lower(), list(_NETWORKS), n=2, cutoff=0.6)
    hint = 'Did you mean {}? '.format(_listing(repr(c) for c in close)) if close else ''
    return '{} {!r} is not a YOLOv3 base network. {}Choose one of {}'.format(
        flag, name, hint, _listing(_NETWORKS))


def networks_with_weights(class_set):
    """The networks GluonCV publishes trained YOLOv3 weights of for `class_set`."""
    return tuple(n for n in _NETWORKS if _published(model_name(n, class_set)))


def _published(name):
    try:
        model_store.short_hash(name)
    except ValueError:
        return False
    return True


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
    parts = _split_model_name(key)
    if parts is None:
        if key not in gluoncv.model_zoo.get_model_list():
            raise ValueError(_unknown_name_message(name))
        return gluoncv.model_zoo.get_model(key, **kwargs)
    network, class_set = parts
    return _NETWORKS[network].build(class_set, **kwargs)


def _yolo3(network, class_set, **kwargs):
    """The one builder behind every registered network: GluonCV's YOLOv3 `network` for
    `class_set`, made FP16-safe (from a local weights file, or GluonCV's downloads), with
    `anchors` if given (GluonCV's builders fix COCO's: :func:`.anchors.set_anchors`)."""
    key = model_name(network, class_set)
    anchors = kwargs.pop('anchors', None)
    if class_set == 'custom' and 'classes' not in kwargs:
        raise ValueError("'{}' needs classes=[...] (the names of your classes), e.g. "
                         "get_model('{}', classes=['cat', 'dog'])".format(key, key))
    pretrained = kwargs.get('pretrained', False)
    net = _build_from_file(key, pretrained, kwargs) if _is_local_file(pretrained) \
        else make_fp16_safe(_build_with_downloads(key, kwargs))
    return net if anchors is None else set_anchors(net, anchors)


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
    if classes and _split_model_name(key) and not key.endswith('_custom'):
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
    close = difflib.get_close_matches(name.lower(), get_model_list(), n=3, cutoff=0.5)
    if not close:
        close = difflib.get_close_matches(
            name.lower(), gluoncv.model_zoo.get_model_list(), n=3, cutoff=0.6)
    hint = ("Did you mean: {}?".format(', '.join(repr(c) for c in close)) if close
            else "YOLOv3 names are yolo3_{{{}}}_{{{}}}; see "
                 "gluoncv_fp16.model_zoo.get_model_list().".format(
                     ','.join(_NETWORKS), ','.join(CLASS_SETS)))
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
    """Path of the ImageNet weights of a YOLOv3 backbone (a name of
    :func:`network_names`), downloaded into GluonCV's cache if needed: what
    ``pretrained_base=True`` loads.

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
