"""Run an exported ``.onnx`` detector with ONNX Runtime (demo, evaluation, self-check)."""
import json
import os

import numpy as np

from ..errors import OnnxRuntimeError

__all__ = ['OnnxDetector', 'OnnxRuntimeError', 'load_onnx']

ORT_PINS = 'pip install --no-deps "onnxruntime==1.17.3"'


def _runtime():
    try:
        import onnxruntime  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        raise OnnxRuntimeError("running .onnx files needs onnxruntime ({}); install it with: "
                               "{}".format(err, ORT_PINS)) from None
    return onnxruntime


class OnnxDetector:
    """An ONNX Runtime session of a gluoncv_fp16 export plus its recorded metadata.

    Attributes
    ----------
    classes : list of str
    data_shape : int
    mean, std : tuple of float
    dtype : str
        Input dtype ('float32' or 'float16').
    precision : str
        What the graph computes in: 'int8' for an INT8 export, else `dtype`.
    providers : list of str
        Execution providers the session uses, in ONNX Runtime's order of preference.
    """

    def __init__(self, session, metadata):
        self.session = session
        self.metadata = metadata
        self.classes = list(metadata.get('classes', []))
        self.data_shape = int(metadata.get('data_shape', 416))
        self.mean = tuple(metadata.get('mean', (0.485, 0.456, 0.406)))
        self.std = tuple(metadata.get('std', (0.229, 0.224, 0.225)))
        self.dtype = metadata.get('dtype', 'float32')
        self.precision = metadata.get('precision', self.dtype)
        self.providers = session.get_providers()

    def __call__(self, x):
        """(ids, scores, boxes) numpy FP32 for a (B, 3, S, S) normalised batch."""
        x = np.asarray(x, dtype=self.dtype)
        return tuple(self.session.run(['ids', 'scores', 'boxes'], {'data': x}))


def _metadata(session):
    props = session.get_modelmeta().custom_metadata_map
    metadata = {}
    for key, value in props.items():
        try:
            metadata[key] = json.loads(value)
        except ValueError:
            metadata[key] = value
    return metadata


def load_onnx(path, providers=None):
    """An :class:`OnnxDetector` for `path`.

    Parameters
    ----------
    path : str
    providers : list of str, optional
        ONNX Runtime execution providers; default: all available, CPU last.

    Raises
    ------
    OnnxRuntimeError
        onnxruntime missing, no such file, or not a gluoncv_fp16 detector.
    """
    ort = _runtime()
    if not os.path.isfile(path):
        raise OnnxRuntimeError("No ONNX model at '{}'; write one with scripts/export.py "
                               "CHECKPOINT --format onnx --out PREFIX".format(path))
    try:
        session = ort.InferenceSession(path, providers=providers or
                                       ort.get_available_providers())
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise OnnxRuntimeError("ONNX Runtime cannot load '{}': {}".format(
            path, str(err).strip().splitlines()[0])) from None
    names = [o.name for o in session.get_outputs()]
    if names != ['ids', 'scores', 'boxes'] or [i.name for i in session.get_inputs()] != ['data']:
        raise OnnxRuntimeError("'{}' is not a gluoncv_fp16 detector export (inputs {}, outputs "
                               "{}; expected data -> ids, scores, boxes)".format(
                                   path, [i.name for i in session.get_inputs()], names))
    return OnnxDetector(session, _metadata(session))
