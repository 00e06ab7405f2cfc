"""The one model loader: weights from a checkpoint or a ``.params`` file into a network.

:func:`read_source` reads what a file says about its model (:class:`ModelSource`: name,
classes, weights, the run's recorded data shape and normalisation) and
:meth:`ModelSource.build` rebuilds that network with the weights; :func:`load_model` is
the two in one call. Eval, export and demo load through these; resume and
``--pretrained`` put weights into the network training built with
:func:`load_params_into`, which every path ends in: names and shapes are checked whole,
by :func:`gluoncv_fp16.model_zoo.params.param_mismatch`, before anything is written.

A gluoncv_fp16 checkpoint records the model name and classes (``meta['model']``) and the
run's settings (``meta['config']``: data shape, and mean/std when the run recorded them),
so a model trained at 96 px is run at 96 px without the user repeating it. A plain
``.params`` file (GluonCV's, or ``save_parameters``) records nothing: the network name
must be given, the classes are the dataset's unless given, and the data shape and
normalisation are GluonCV's defaults. Both hold the anchors the network was trained with
(``yolo_outputs.<i>.anchors``, parameters like any other; a checkpoint also lists them in
``meta['model']['anchors']``): the network is rebuilt with them.

The checkpoint of an ``--ema`` run gives its EMA weights: the run validated them, chose
``_best`` by them and wrote them to its ``.params`` files, so eval, export and demo of
``_best.ckpt`` or ``_last.ckpt`` see the model whose mAP training printed. ``--resume``
reads the training weights (and the EMA's separately) through the run state.
"""
import mxnet as mx
import numpy as np

from ..errors import CheckpointError, SourceError
from ..model_zoo import build_untrained
from ..model_zoo.anchors import anchors_in_params
from ..model_zoo.params import named_params, param_mismatch, structural_params
from .format import read_checkpoint

__all__ = ['load_params_into', 'load_model', 'initialise_with', 'structural_params',
           'ModelSource', 'read_source', 'IMAGENET_MEAN', 'IMAGENET_STD',
           'DEFAULT_DATA_SHAPE']

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what GluonCV's and our transforms normalise with
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DATA_SHAPE = 416  # GluonCV's train_yolo3.py default


def load_params_into(net, params, origin='checkpoint'):
    """Copy `params` (structural name -> array) into `net`, cast to each parameter's dtype.

    `net` must be initialised with known shapes (run one forward first).

    Raises
    ------
    CheckpointError
        If names or shapes differ (another network or class count), before anything
        is modified.
    """
    own = named_params(net)
    mismatch = param_mismatch(own, params)
    if mismatch:
        raise CheckpointError(mismatch.message(origin))
    for name, param in own.items():
        value = params[name]
        array = value if isinstance(value, mx.nd.NDArray) else mx.nd.array(value,
                                                                            dtype='float32')
        param.set_data(array.astype(param.dtype))


def load_model(path, ctx=None, dtype='float32', network=None, classes=None):
    """Rebuild the network a checkpoint (or, with `network`, a plain ``.params`` file)
    holds and load its weights: ``read_source(path, network, classes).build(dtype, ctx)``.

    Returns the FP16-safe network (cast to `dtype`) on `ctx` (default CPU). Raises
    `SourceError` for a plain file without `network`, `CheckpointError` for a missing or
    damaged file or weights that do not fit.
    """
    return read_source(path, network, classes).build(dtype, ctx)


def initialise_with(net, params, ctx, origin='checkpoint'):
    """Initialise an untrained `net` (already cast to its dtype) on `ctx`, run one tiny
    forward so deferred shapes become known, and copy `params` in. Returns `net`."""
    net.initialize(ctx=ctx)
    dtype = net.yolo_outputs[0].prediction.weight.dtype if hasattr(net, 'yolo_outputs') \
        else 'float32'
    with mx.autograd.predict_mode():
        net(mx.nd.zeros((1, 3, 64, 64), ctx=ctx, dtype=dtype))
    load_params_into(net, params, origin=origin)
    return net


class ModelSource:
    """A trained model's weights and description.

    Attributes
    ----------
    name : str
        Model name, e.g. ``'yolo3_mobilenet0.25_custom'``.
    classes : list of str or None
        None: the named dataset's classes (plain ``.params`` of a VOC/COCO model).
    params : dict of str -> numpy.ndarray
        FP32 weights by structural name.
    data_shape : int
        Recorded square input side, else 416.
    recorded_shape : bool
        Whether `data_shape` came from the file.
    mean, std : tuple of float
        RGB normalisation ``(x / 255 - mean) / std``.
    config : dict
        The run's recorded settings (``meta['config']``), empty for plain files.
    path : str
    anchors : list of list of float or None
        The anchors the weights were trained with (GluonCV format: three groups of
        ``w, h`` pairs in pixels, smallest first), read from the weights; None for a
        file without them (the network's own are used).
    weights_kind : str
        ``'ema'`` when a run-state checkpoint of an ``--ema`` run gave its EMA weights
        (the ones that run validated and exported), else ``'training'``.
    """

    def __init__(self, name, classes, params, config, path, weights_kind='training'):
        self.name, self.classes, self.params, self.path = name, classes, params, path
        self.weights_kind = weights_kind
        self.anchors = anchors_in_params(params)
        self.config = dict(config)
        self.recorded_shape = bool(config.get('data_shape'))
        self.data_shape = int(config.get('data_shape') or DEFAULT_DATA_SHAPE)
        self.mean = tuple(config.get('mean') or IMAGENET_MEAN)
        self.std = tuple(config.get('std') or IMAGENET_STD)

    def build(self, dtype='float32', ctx=None):
        """The FP16-safe network with these weights, cast to `dtype`, on `ctx` (CPU)."""
        net = self.untrained()
        if np.dtype(dtype) != np.float32:
            net.cast(dtype)
        return initialise_with(net, self.params, ctx or mx.cpu(),
                               origin="'{}'".format(self.path))

    def untrained(self):
        """The network, not initialised, in a fresh name scope (stable parameter names)."""
        try:
            with mx.name.NameManager():
                return build_untrained(self.name, self.classes, anchors=self.anchors)
        except ValueError as err:
            raise SourceError(str(err)) from None


def read_source(path, network=None, classes=None):
    """A :class:`ModelSource` from a checkpoint or a plain ``.params`` file.

    Parameters
    ----------
    path : str
    network : str, optional
        Model name; required for a plain ``.params`` file, must agree with a checkpoint.
    classes : list of str, optional
        Class names of a plain ``.params`` file; must agree with a checkpoint.

    Raises
    ------
    SourceError
        A plain file without `network`, or `network` / `classes` contradicting the file.
    gluoncv_fp16.errors.CheckpointError
        Missing or unreadable file.
    """
    ckpt = read_checkpoint(path, prefer_ema=True)
    model = ckpt.meta.get('model')
    config = ckpt.meta.get('config') or {}
    if model:
        if network and network.lower() != model['name']:
            raise SourceError("'{}' was trained as '{}', not '{}'; drop --network".format(
                path, model['name'], network))
        if classes and list(classes) != list(model['classes']):
            raise SourceError("'{}' was trained with classes {}, not {}; drop --classes"
                              .format(path, model['classes'], list(classes)))
        return ModelSource(model['name'], list(model['classes']), ckpt.params, config, path,
                           weights_kind='ema' if ckpt.ema else 'training')
    if not network:
        raise SourceError("'{}' is a plain .params file with no model description: pass "
                          "the network name (e.g. --network yolo3_darknet53_voc) and, if "
                          "the classes differ from the dataset's, --classes a,b,c".format(path))
    return ModelSource(network.lower(), list(classes) if classes else None, ckpt.params, {},
                       path)
