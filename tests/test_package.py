"""Packaging promises: a missing MXNet is explained, and the extras named really exist.

MXNet is an extra (`[cpu]` or `[cu112]`) because pip cannot choose between its CPU and
CUDA builds, so "pip install gluoncv_fp16" alone leaves it out. The import must then say
which extra to install instead of failing with a bare ModuleNotFoundError.
"""
import ast
import importlib
import os
import re
import subprocess
import sys
import textwrap

import gluoncv_fp16
from helpers import ROOT, child_env

CLI_COMMANDS = ('train', 'eval', 'export', 'demo', 'check', 'data')  # gluoncv_fp16/cli/<command>.py

# Runs in a fresh interpreter: a meta-path finder that makes `import mxnet` (and any
# submodule) fail exactly as it does when MXNet is not installed.
WITHOUT_MXNET = textwrap.dedent('''
    import sys

    class NoMXNet:
        def find_spec(self, name, path=None, target=None):
            if name == 'mxnet' or name.startswith('mxnet.'):
                raise ModuleNotFoundError("No module named 'mxnet'", name=name)
            return None

    sys.meta_path.insert(0, NoMXNet())
    try:
        import gluoncv_fp16
    except ImportError as err:
        print(err)
        print('cause:', type(err.__cause__).__name__)
        sys.exit(3)
    print('imported without mxnet?!')
''')


def run_without_mxnet():
    env = child_env()
    return subprocess.run([sys.executable, '-c', WITHOUT_MXNET], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def setup_py():
    with open(os.path.join(ROOT, 'setup.py')) as f:
        return f.read()


def test_import_without_mxnet_names_both_extras():
    proc = run_without_mxnet()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    message = proc.stdout
    assert 'gluoncv_fp16[cpu]' in message and 'gluoncv_fp16[cu112]' in message, message
    assert 'mxnet==1.9.1' in message and 'mxnet-cu112==1.9.1' in message, message
    assert 'cause: ModuleNotFoundError' in message  # the original error stays chained


def test_the_extras_named_by_the_guard_exist_in_setup_py():
    text = setup_py()
    assert re.search(r"'cpu':\s*\['mxnet==1\.9\.1'\]", text)
    assert re.search(r"'cu112':\s*\['mxnet-cu112==1\.9\.1'\]", text)


def test_package_version_matches_setup_py():
    declared = re.search(r"version='([^']+)'", setup_py()).group(1)
    assert gluoncv_fp16.__version__ == declared


def _setup_keyword(name):
    """The literal value of keyword `name` of the setup() call in setup.py."""
    with open(os.path.join(ROOT, 'setup.py'), encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'setup':
            for keyword in node.keywords:
                if keyword.arg == name:
                    return ast.literal_eval(keyword.value)
    raise AssertionError('setup() has no {}='.format(name))


def test_setup_declares_a_console_entry_point_per_command():
    scripts = dict(re.match(r'\s*(\S+)\s*=\s*(\S+)\s*$', spec).groups()
                   for spec in _setup_keyword('entry_points')['console_scripts'])
    assert sorted(scripts) == sorted('gluoncv-fp16-' + c for c in CLI_COMMANDS)
    for command in CLI_COMMANDS:
        module, _, function = scripts['gluoncv-fp16-' + command].partition(':')
        assert module == 'gluoncv_fp16.cli.' + command
        assert callable(getattr(importlib.import_module(module), function))
