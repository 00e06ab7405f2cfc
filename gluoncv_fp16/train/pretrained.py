"""`--pretrained FILE|voc|coco`: start training from weights learnt on other classes.

Everything but the class predictions is copied as it is (the source must be the same
YOLOv3 network). In each of the three prediction convolutions, the rows of classes
present in both the source and the run (matched by name) are copied, and so are the
class-agnostic rows (box offsets and objectness, the first five of each anchor); rows of
classes the source does not know keep the run's fresh initialisation. GluonCV's
``reset_class(reuse_weights=...)`` does the same, except that it also starts box and
objectness rows fresh when no class is shared; they do not depend on the classes, so
they are kept here too.

Sources: ``'voc'`` / ``'coco'`` (GluonCV's published ``yolo3_<network>_<dataset>``
weights, from its cache or downloaded), a gluoncv_fp16 checkpoint (class names are
recorded in it), or a plain ``.params`` file (GluonCV's or ours; its class names are
VOC's or COCO's when it predicts 20 or 80 classes). Weights files are read with
``mx.nd.load`` (never unpickled) and checked whole -- names, shapes, dtypes -- before
anything is copied.
"""
import logging
import os
import zipfile

import mxnet as mx
import numpy as np

from ..model_zoo import (PretrainedWeightsUnavailable, backbone_weights_file, dataset_classes,
                         model_name, networks_with_weights, pretrained_weights_file)
from ..checkpoint import (CheckpointError, load_params_into, param_mismatch, read_checkpoint,
                          structural_params)
from .config import ConfigError

__all__ = ['check_downloads', 'PretrainedSource', 'read_pretrained', 'load_pretrained', 'merge_predictions',
           'PUBLISHED']

logger = logging.getLogger(__name__)

PUBLISHED = ('voc', 'coco')
_ANCHORS_PER_OUTPUT = 3  # every GluonCV YOLOv3 output layer has three anchors
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


class PretrainedSource:
    """Weights to start from and the class names they predict.

    Attributes
    ----------
    params : dict of str -> numpy.ndarray
        Structural parameter name -> FP32 array.
    classes : list of str or None
        None when a plain file's class names cannot be known.
    origin : str
        Where the weights came from, for messages.
    """

    def __init__(self, params, classes, origin):
        self.params, self.classes, self.origin = params, classes, origin


def _plain_params(path):
    """Name -> FP32 numpy from a plain ``.params`` file, validated before use."""
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise CheckpointError("--pretrained '{}' is neither a gluoncv_fp16 checkpoint nor an "
                              "MXNet .params file ({})".format(
                                  path, str(err).strip().splitlines()[-1])) from None
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError("--pretrained '{}' holds no named parameters".format(path))
    bad = sorted(k for k, v in loaded.items() if np.dtype(v.dtype) not in _FLOAT_DTYPES)
    if bad:
        raise CheckpointError("--pretrained '{}': parameter '{}' is {}, expected float32 or "
                              "float16".format(path, bad[0], np.dtype(loaded[bad[0]].dtype)))
    return {k.split(':', 1)[-1]: v.asnumpy().astype(np.float32) for k, v in loaded.items()}


def _num_classes(params):
    bias = params.get('yolo_outputs.0.prediction.bias')
    return None if bias is None else bias.shape[0] // _ANCHORS_PER_OUTPUT - 5


def _classes_by_count(count, network):
    for dataset in PUBLISHED:
        names = dataset_classes('yolo3_{}_{}'.format(network, dataset))
        if len(names) == count:
            return names
    return None


def read_pretrained(source, network, root=None):
    """A :class:`PretrainedSource` for ``--pretrained`` (a path, ``'voc'`` or ``'coco'``).

    Raises
    ------
    CheckpointError
        Missing or unreadable file, non-float arrays.
    gluoncv_fp16.model_zoo.PretrainedWeightsUnavailable
        ``'voc'``/``'coco'`` weights neither cached nor downloadable, or not published.
    """
    if source in PUBLISHED:
        name = 'yolo3_{}_{}'.format(network, source)
        kwargs = {'root': root} if root else {}
        path = pretrained_weights_file(name, **kwargs)
        return PretrainedSource(_plain_params(path), dataset_classes(name),
                                "GluonCV's {}".format(name))
    if not os.path.isfile(source):
        raise CheckpointError("--pretrained '{}': no such file (give a .params file, a "
                              "checkpoint, or 'voc' / 'coco')".format(source))
    if zipfile.is_zipfile(source):
        # An --ema run validated, chose _best by and exported its EMA weights: fine-tuning
        # starts from those too, as YOLOv5 does from its checkpoints' EMA model.
        ckpt = read_checkpoint(source, prefer_ema=True)
        model = ckpt.meta.get('model') or {}
        return PretrainedSource(ckpt.params, model.get('classes'), "'{}'{}".format(
            source, ' (its EMA weights)' if ckpt.ema else ''))
    params = _plain_params(source)
    return PretrainedSource(params, _classes_by_count(_num_classes(params), network),
                            "'{}'".format(source))


def merge_predictions(old, new, old_classes, new_classes):
    """`new` prediction rows with box/objectness and shared classes' rows taken from `old`.

    Parameters
    ----------
    old, new : numpy.ndarray
        Weight (3 * (5 + C), in, 1, 1) or bias (3 * (5 + C),) of one prediction conv,
        for the source's and the run's classes.
    old_classes, new_classes : list of str

    Returns
    -------
    numpy.ndarray
        A copy of `new` with the reused rows replaced.
    """
    merged = new.copy()
    old_n, new_n = 5 + len(old_classes), 5 + len(new_classes)
    for anchor in range(_ANCHORS_PER_OUTPUT):
        merged[anchor * new_n:anchor * new_n + 5] = old[anchor * old_n:anchor * old_n + 5]
        for index, name in enumerate(new_classes):
            if name in old_classes:
                merged[anchor * new_n + 5 + index] = \
                    old[anchor * old_n + 5 + old_classes.index(name)]
    return merged


def _is_prediction(name):
    return '.prediction.' in name


def _check_same_network(own, params, source):
    """Names and (non-prediction) shapes must agree: the same YOLOv3 network."""
    mismatch = param_mismatch(own, params, skip_shape=_is_prediction)
    if mismatch and mismatch.name is None:
        raise CheckpointError("--pretrained {} is not this network ({}); use weights of the "
                              "same --network".format(source.origin, mismatch.names_text(2)))
    if mismatch:
        raise CheckpointError("--pretrained {}: '{}' is {} there but {} here; use weights "
                              "of the same --network".format(
                                  source.origin, mismatch.name, mismatch.saved_shape,
                                  mismatch.own_shape))


def _source_classes(source, classes):
    """The source's class names; an unnamed file with our class count is assumed ours."""
    count = _num_classes(source.params)
    if source.classes is not None:
        if len(source.classes) != count:
            raise CheckpointError("--pretrained {} records {} classes but predicts {}".format(
                source.origin, len(source.classes), count))
        return list(source.classes)
    if count == len(classes):
        logger.warning('--pretrained %s records no class names; assuming its %d classes are '
                       "this run's, in the same order", source.origin, count)
        return list(classes)
    raise CheckpointError(
        "--pretrained {} predicts {} classes but records no names (not VOC's 20 or COCO's "
        "80), so they cannot be matched to this run's {}; use the gluoncv_fp16 checkpoint "
        "(.ckpt) it came from, which records them".format(source.origin, count, len(classes)))


def load_pretrained(net, source, classes, network, root=None):
    """Copy `source`'s weights into the initialised `net` (trained for `classes`).

    Returns
    -------
    list of str
        The classes whose predictions were reused.
    """
    pretrained = read_pretrained(source, network, root=root)
    own = {k: v.asnumpy() for k, v in structural_params(net).items()}
    _check_same_network(own, pretrained.params, pretrained)
    old_classes = _source_classes(pretrained, classes)
    # the network was built with the run's anchors (the file's unless --auto-anchor
    # refitted them: gluoncv_fp16.train.anchors); they stay
    merged = {name: (merge_predictions(pretrained.params[name], own[name], old_classes,
                                       list(classes))
                     if _is_prediction(name) else own[name] if name.endswith('.anchors')
                     else pretrained.params[name]) for name in own}
    load_params_into(net, merged, origin='--pretrained {}'.format(pretrained.origin))
    reused = [c for c in classes if c in old_classes]
    fresh = [c for c in classes if c not in old_classes]
    logger.info('--pretrained %s: reused the predictions of %d classes (%s); %d start fresh '
                '(%s); box and objectness rows reused', pretrained.origin, len(reused),
                ', '.join(reused) or 'none', len(fresh), ', '.join(fresh) or 'none')
    return reused


def check_downloads(cfg):
    """Fetch the published weights the run starts from -- the ImageNet backbone unless
    --no-pretrained-base, GluonCV's detector for --pretrained voc/coco -- into GluonCV's
    cache, or refuse in one line naming the flags (offline machines), before any network
    is built. Training calls it once devices and data have been checked: a missing GPU or
    dataset is the more basic mistake, and should not cost a download first.

    Raises
    ------
    ConfigError
        The weights are neither cached nor downloadable, damaged, or not published.
    """
    if cfg.uses_pretrained_base:
        try:
            backbone_weights_file(cfg.network)
        except PretrainedWeightsUnavailable as err:
            raise ConfigError(
                'the ImageNet weights of the {} backbone {}: train from scratch with '
                '--no-pretrained-base, start from your own weights with --pretrained FILE, '
                'or {}'.format(cfg.network, *_unavailable(err))) from None
    if cfg.pretrained in ('voc', 'coco'):
        name = model_name(cfg.network, cfg.pretrained)
        try:
            pretrained_weights_file(name)
        except PretrainedWeightsUnavailable as err:
            if not err.files:  # GluonCV publishes none for this network
                raise ConfigError('--pretrained {}: GluonCV publishes no weights for {}; '
                                  'give your own with --pretrained FILE, or use --network '
                                  '{}'.format(cfg.pretrained, name, ' or '.join(
                                      networks_with_weights(cfg.pretrained)))) from None
            raise ConfigError("--pretrained {}: GluonCV's {} weights {}: give your own with "
                              "--pretrained FILE, or {}".format(cfg.pretrained, name,
                                                                *_unavailable(err))) from None


def _unavailable(err):
    """(what went wrong, how to mend the cache) for a PretrainedWeightsUnavailable."""
    files = ' and '.join(err.files)
    if err.corrupt:
        return ('fail their SHA-1 check in {} (an interrupted download?) and could not be '
                'downloaded again ({})'.format(err.root, err.cause),
                'delete {} and download it again'.format(' and '.join(err.corrupt)))
    return ('are not in {} and could not be downloaded ({})'.format(err.root, err.cause),
            "put {} there (GluonCV's cache; MXNET_HOME moves it)".format(files))
