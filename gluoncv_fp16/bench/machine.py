"""Where a measurement was made: the commit and the CPU, for the header of a result."""
import os
import platform
import subprocess

__all__ = ['commit', 'cpu_model', 'cpu_features']

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
