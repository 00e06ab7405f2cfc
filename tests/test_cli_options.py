"""The command line as a whole: flag declarations vs docs, --help of every command, and
the shims that stay for users (the console entry points: tests/test_package.py)."""
import ast
import os
import re
import subprocess
import sys

import pytest

from gluoncv_fp16.cli.options import REGENERATE, reference
from gluoncv_fp16.train.config import TrainConfig
from gluoncv_fp16.utils.options import declared_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ('train', 'eval', 'export', 'demo', 'check', 'data')
# what users type today; each is a shim of gluoncv_fp16.cli.<command>
SHIMS = {'train_yolo3.py': 'train', 'scripts/eval.py': 'eval', 'scripts/export.py': 'export',
         'scripts/demo.py': 'demo', 'scripts/device_check.py': 'check'}


def test_docs_options_is_the_rendering_of_the_declarations():
    with open(os.path.join(ROOT, 'docs', 'options.md'), encoding='utf-8') as f:
        text = f.read()
    assert text == reference(), 'docs/options.md is stale: run ' + REGENERATE


def test_every_declared_flag_is_in_the_reference_once():
    text = reference()
    for _, flag in declared_flags(TrainConfig):
        assert text.count('| `{}`'.format(flag.names[0])) == 1, flag.names


def test_readme_flag_table_names_declared_flags_and_links_the_reference():
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    assert '(docs/options.md)' in readme
    names = {name for _, flag in declared_flags(TrainConfig) for name in flag.names}
    names |= {'--no-' + name[2:] for _, flag in declared_flags(TrainConfig) if flag.negatable
              for name in flag.names}
    rows = [line.split(' | ')[0] for line in readme.splitlines() if line.startswith('| `--')]
    named = {n for row in rows for n in re.findall(r'--[a-z0-9][a-z0-9-]*', row)}
    assert len(rows) >= 8 and named <= names, named - names


def test_help_of_every_command_module_exits_0():
    """``python -m gluoncv_fp16.cli.<command> --help`` (what the console entry points run),
    the flag reference printer, and the shims users know."""
    runs = [[sys.executable, '-m', 'gluoncv_fp16.cli.' + c, '--help'] for c in COMMANDS]
    runs.append([sys.executable, '-m', 'gluoncv_fp16.cli.options', '--help'])
    runs += [[sys.executable, os.path.join(ROOT, path), '--help'] for path in SHIMS]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for cmd in runs]
    for cmd, proc in zip(runs, procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.startswith('usage:'), (cmd, err[-2000:])
        assert 'Traceback' not in err, (cmd, err[-2000:])


@pytest.mark.parametrize('path', sorted(SHIMS))
def test_user_scripts_are_shims_of_the_cli(path):
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        text = f.read()
    assert 'from gluoncv_fp16.cli.{} import main'.format(SHIMS[path]) in text
    assert len(text.splitlines()) < 20


def _imported_modules(path):
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_nothing_imports_the_training_script_or_a_moved_script():
    moved = {os.path.splitext(os.path.basename(p))[0] for p in SHIMS}
    found = []
    for folder in ('gluoncv_fp16', 'scripts', 'tests'):
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(base, name)
                    found += [(path, m) for m in _imported_modules(path) if m in moved]
    assert found == []
