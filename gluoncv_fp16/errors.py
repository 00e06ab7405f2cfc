"""The errors a user can cause, in one module: a setting, a file or a job that cannot be
used as given. Each message says what was received and what to do; entry points catch
these classes and print one line instead of a traceback.

This module imports nothing from the package, so every layer can raise these errors
(the modules that used to define them still re-export their names).
"""

__all__ = ['ConfigError', 'SelfCheckFailed', 'CheckpointError', 'TrainingDiverged',
           'BadSampleError', 'CacheError', 'PretrainedWeightsUnavailable', 'LaunchError',
           'ExportError', 'EvalError', 'PredictError', 'SourceError', 'OnnxRuntimeError',
           'ParamFileError', 'USER_ERRORS']


class ConfigError(ValueError):
    """A setting, or a combination of settings, that cannot work."""


class SelfCheckFailed(ConfigError):
    """The chosen precision does not agree with FP32 on these devices."""


class CheckpointError(ValueError):
    """A checkpoint or weights file is missing, damaged, or does not fit this network.

    The one error for every such file (:mod:`gluoncv_fp16.checkpoint`, `load_parameters`
    of the FP16-safe networks, ``--pretrained``).
    """


class TrainingDiverged(RuntimeError):
    """Training produced inf/NaN again and again; recovery was abandoned."""


class BadSampleError(ValueError):
    """A sample is unusable and the dataset was opened with ``strict=True``.

    ``path`` and ``reason`` say which file and what is wrong; the message says both
    and what to do. Survives pickling (it travels back from data worker processes).
    """

    def __init__(self, message, path=None, reason=None):
        super().__init__(message)
        self.path, self.reason = path, reason

    def __reduce__(self):
        return type(self), (str(self), self.path, self.reason)


class CacheError(ValueError):
    """The image cache cannot be made as asked (does not fit, folder not writable)."""


class PretrainedWeightsUnavailable(OSError):
    """Pretrained weights are neither cached locally nor downloadable.

    Attributes, for callers that word their own advice (the CLI names its flags):
    ``files`` (the ``.params`` names missing or damaged; empty when GluonCV publishes no
    weights for the name), ``corrupt`` (those cached but failing their SHA-1 check),
    ``root`` (the cache folder) and ``cause`` (the error's type name).
    """

    def __init__(self, message, files=(), corrupt=(), root='', cause=''):
        super().__init__(message)
        self.files, self.corrupt = list(files), list(corrupt)
        self.root, self.cause = root, cause

    def __reduce__(self):
        return type(self), (str(self), self.files, self.corrupt, self.root, self.cause)


class LaunchError(RuntimeError):
    """A job that cannot be started as requested (bad hostfile, counts, command)."""


class ExportError(ValueError):
    """The export cannot be made as asked (bad arguments, or a graph that fails checks)."""


class EvalError(ValueError):
    """An evaluation that cannot run as asked (the message says why and what to do)."""


class PredictError(ValueError):
    """An image or a model cannot be used for prediction (the message says why)."""


class SourceError(ValueError):
    """A model file, or the names given with it, cannot be used (the message says why)."""


class OnnxRuntimeError(ValueError):
    """ONNX Runtime missing, or a file it cannot run (the message says why)."""


class ParamFileError(ValueError):
    """A file that cannot be read as network parameters."""


# What every command reports as one line (exit status 2) instead of a traceback.
USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, TrainingDiverged,
               PretrainedWeightsUnavailable, BadSampleError, CacheError, ExportError,
               EvalError, PredictError, SourceError, OnnxRuntimeError, ParamFileError)
