"""gluoncv_fp16: train GluonCV's YOLOv3 in half precision.

MXNet comes in several builds (CPU, CUDA 11.2, ...) that pip cannot choose for you,
so it is an extra of this package rather than a hard requirement; the import guard
below turns its absence into an instruction instead of a bare ModuleNotFoundError, and
:mod:`.mxnet_compat` refuses (or warns about) a version other than the tested 1.9.x.
"""
try:
    import mxnet as _mx  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "gluoncv_fp16 needs MXNet 1.9.1, which is not installed. Install the build for "
        "your machine: `pip install gluoncv_fp16[cpu]` (mxnet==1.9.1, CPU only) or "
        "`pip install gluoncv_fp16[cu112]` (mxnet-cu112==1.9.1, CUDA 11.2 GPUs).") from err

from . import mxnet_compat  # noqa: F401  (refuses or warns about an untested MXNet)

__version__ = "0.1.0"
