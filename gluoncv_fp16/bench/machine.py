"""Where a measurement was made: the commit and the CPU, for the header of a result; and
the environment variables a measurement needs before MXNet starts."""
import os
import platform
import subprocess
import sys

__all__ = ['commit', 'cpu_model', 'cpu_features', 'cap_env', 'rerun_with_environment']

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The /proc/cpuinfo flags that decide which oneDNN kernels run (docs/results.md).
ISA_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16',
             'amx_int8')


def commit():
    """``git describe --always --dirty`` of the checkout this package runs from, or None."""
    try:
        done = subprocess.run(['git', '-C', ROOT, 'describe', '--always', '--dirty'],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _cpuinfo_field(name):
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.split(':', 1)[0].strip() == name:
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``), or what `platform` knows, or None."""
    return _cpuinfo_field('model name') or platform.processor() or None


def cpu_features():
    """Which of :data:`ISA_FLAGS` this CPU has, in that order (empty off Linux)."""
    flags = set((_cpuinfo_field('flags') or '').split())
    return [flag for flag in ISA_FLAGS if flag in flags]


def cap_env(cap, env=None):
    """A copy of `env` (default: this process's) for a child whose oneDNN instruction set
    is capped to `cap` (``DNNL_MAX_CPU_ISA``; 'default': no cap; None: leave as it is).
    oneDNN reads the variable once, when it starts, so a cap needs a process of its own."""
    env = dict(os.environ if env is None else env)
    if cap is not None:
        env.pop('DNNL_MAX_CPU_ISA', None)
        env.pop('MKLDNN_MAX_CPU_ISA', None)  # the older name oneDNN still reads
        if cap != 'default':
            env['DNNL_MAX_CPU_ISA'] = cap
    return env


def rerun_with_environment(module, defaults, argv=None):
    """Run ``python -m <module> <argv>`` again in this process (``os.execve``) with the
    variables of `defaults` that are unset; return at once when none is.

    MXNet and OpenMP read some variables (``MXNET_CPU_TEMP_COPY``, ``OMP_NUM_THREADS``)
    once, when they load, and ``python -m gluoncv_fp16.bench.<x>`` has loaded MXNet (the
    package's ``__init__``) before the module runs: setting them then changes nothing, a
    fresh interpreter started with them set does. A variable already set keeps its value.
    In the new interpreter every variable is set, so this returns there and the run goes
    on. Call it only from a module's ``if __name__ == '__main__'`` block, never from a
    function other code calls: it replaces the process.

    Parameters
    ----------
    module : str
        The module's dotted name, as given to ``python -m``.
    defaults : dict
        ``{variable: value}`` to set when unset.
    argv : list of str, optional
        The command-line arguments (default: ``sys.argv[1:]``).
    """
    missing = {name: value for name, value in defaults.items() if name not in os.environ}
    if not missing:
        return
    argv = sys.argv[1:] if argv is None else list(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, '-m', module] + argv,
              dict(os.environ, **missing))
