"""What a deployment tool needs to know about a trained model, read from its file.

A gluoncv_fp16 checkpoint records the model name and classes (``meta['model']``) and
the run's settings (``meta['config']``: data shape, and mean/std when the run recorded
them). Export, demo and evaluation take these as defaults, so a model trained at 96 px
is run at 96 px without the user repeating it. A plain ``.params`` file (GluonCV's, or
``save_parameters``) records nothing: the network name must be given, the classes are
the dataset's unless given, and the data shape and normalisation are GluonCV's defaults.
"""
import mxnet as mx

from ..model_zoo import build_untrained
from ..checkpoint import initialise_with, read_checkpoint
from ..errors import SourceError

__all__ = ['ModelSource', 'SourceError', 'read_source', 'IMAGENET_MEAN', 'IMAGENET_STD',
           'DEFAULT_DATA_SHAPE']

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what GluonCV's and our transforms normalise with
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DATA_SHAPE = 416  # GluonCV's train_yolo3.py default


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
    """

    def __init__(self, name, classes, params, config, path):
        self.name, self.classes, self.params, self.path = name, classes, params, path
        self.config = dict(config)
        self.recorded_shape = bool(config.get('data_shape'))
        self.data_shape = int(config.get('data_shape') or DEFAULT_DATA_SHAPE)
        self.mean = tuple(config.get('mean') or IMAGENET_MEAN)
        self.std = tuple(config.get('std') or IMAGENET_STD)

    def build(self, dtype='float32', ctx=None):
        """The FP16-safe network with these weights, cast to `dtype`, on `ctx` (CPU)."""
        net = self.untrained()
        if dtype != 'float32':
            net.cast(dtype)
        return initialise_with(net, self.params, ctx or mx.cpu(),
                               origin="'{}'".format(self.path))

    def untrained(self):
        """The network, not initialised, in a fresh name scope (stable parameter names)."""
        try:
            with mx.name.NameManager():
                return build_untrained(self.name, self.classes)
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
    ckpt = read_checkpoint(path)
    model = ckpt.meta.get('model')
    config = ckpt.meta.get('config') or {}
    if model:
        if network and network.lower() != model['name']:
            raise SourceError("'{}' was trained as '{}', not '{}'; drop --network".format(
                path, model['name'], network))
        if classes and list(classes) != list(model['classes']):
            raise SourceError("'{}' was trained with classes {}, not {}; drop --classes"
                              .format(path, model['classes'], list(classes)))
        return ModelSource(model['name'], list(model['classes']), ckpt.params, config, path)
    if not network:
        raise SourceError("'{}' is a plain .params file with no model description: pass "
                          "the network name (e.g. --network yolo3_darknet53_voc) and, if "
                          "the classes differ from the dataset's, --classes a,b,c".format(path))
    return ModelSource(network.lower(), list(classes) if classes else None, ckpt.params, {},
                       path)
