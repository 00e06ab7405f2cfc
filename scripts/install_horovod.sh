#!/usr/bin/env bash
# Build Horovod 0.28.1 with MXNet support into the active Python environment.
#
#   . .venv/bin/activate && pip install -e ".[cpu,test]" && bash scripts/install_horovod.sh
#
# Run it after the package (and so mxnet or mxnet-cu112 1.9.1) is installed: Horovod
# compiles its MXNet extension against the MXNet it finds. About 5 minutes on 2 cores.
# CPU builds use Gloo for every collective (no MPI needed). When MXNet is a CUDA build
# (mxnet-cu112), GPU tensors go through NCCL: that needs the CUDA 11.2 toolkit (nvcc) and
# NCCL 2 on the machine (set HOROVOD_NCCL_HOME / HOROVOD_CUDA_HOME if they are not in the
# default paths). Only the CPU build was run on this project's machines.
#
# Options: --gpu / --cpu force the build type (default: what the installed MXNet is);
# --force rebuilds even when a working horovod.mxnet is already importable.
set -euo pipefail

HOROVOD_VERSION=0.28.1
mode=auto
force=0
for arg in "$@"; do
    case "$arg" in
        --gpu) mode=gpu ;;
        --cpu) mode=cpu ;;
        --force) force=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "install_horovod.sh: error: unknown option '$arg' (use --gpu, --cpu, --force)" >&2
           exit 2 ;;
    esac
done

PY=${PYTHON:-python}
if ! "$PY" -c 'import mxnet' >/dev/null 2>&1; then
    echo "install_horovod.sh: error: '$PY' cannot import mxnet; activate the environment and" \
         "install the package first: pip install -e \".[cpu]\" (or \".[cu112]\")" >&2
    exit 2
fi

if [ "$force" = 0 ] && "$PY" - "$HOROVOD_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import horovod
import horovod.mxnet  # raises if Horovod was built without its MXNet extension
sys.exit(horovod.__version__ != sys.argv[1])
EOF
then
    echo "install_horovod.sh: horovod $HOROVOD_VERSION with MXNet is already installed"
    exit 0
fi

if [ "$mode" = auto ]; then
    mode=$("$PY" -c 'import mxnet as mx; print("gpu" if mx.runtime.Features().is_enabled("CUDA") else "cpu")')
fi

# gloo's CMakeLists is rejected by cmake 4; `wheel` is needed for a no-isolation build,
# which is what lets Horovod's setup.py see the MXNet installed here.
"$PY" -m pip install -q "cmake<4" wheel

export HOROVOD_WITH_MXNET=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1
export HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=gloo
if [ "$mode" = gpu ]; then
    export HOROVOD_GPU_OPERATIONS=NCCL
fi
echo "install_horovod.sh: building horovod $HOROVOD_VERSION ($mode, Gloo${HOROVOD_GPU_OPERATIONS:+ + NCCL}); this takes minutes"
# --no-cache-dir: a wheel cached from another MXNet build (CPU vs CUDA) would be reused.
# An installed Horovod without the MXNet extension is rebuilt, not "already satisfied".
again=()
if "$PY" -c 'import horovod' >/dev/null 2>&1; then
    again=(--force-reinstall --no-deps)
fi
"$PY" -m pip install -q --no-build-isolation --no-cache-dir ${again[@]+"${again[@]}"} \
    "horovod==$HOROVOD_VERSION"

"$PY" -c 'import horovod.mxnet as hvd; hvd.init(); print("install_horovod.sh: horovod.mxnet works (rank %d of %d)" % (hvd.rank(), hvd.size()))'
