"""The command line as a whole: flag declarations vs docs, --help of every command, and
the shims that stay for users (the console entry points: tests/test_package.py)."""
import ast
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT, child_env
from gluoncv_fp16.cli.options import COMMAND_NAMES, REGENERATE, command_reference, commands
from gluoncv_fp16.cli.options import reference
from gluoncv_fp16.train.config import TrainConfig
from gluoncv_fp16.utils.options import declared_flags, flag_rows

COMMANDS = ('train', 'eval', 'export', 'demo', 'check', 'data')
# what users type today; each is a shim of gluoncv_fp16.cli.<command>
SHIMS = {'train_yolo3.py': 'train', 'scripts/eval.py': 'eval', 'scripts/export.py': 'export',
         'scripts/demo.py': 'demo', 'scripts/device_check.py': 'check'}


def test_docs_options_is_the_rendering_of_the_declarations():
    with open(os.path.join(ROOT, 'docs', 'options.md'), encoding='utf-8') as f:
        text = f.read()
    assert text == reference(), 'docs/options.md is stale: run ' + REGENERATE


def test_every_command_has_its_section_in_the_reference():
    assert COMMAND_NAMES == COMMANDS
    sections = re.findall(r'^## (\S+)$', reference(), flags=re.M)
    assert sections == ['gluoncv-fp16-' + name for name in COMMANDS]


@pytest.mark.parametrize('command', commands(), ids=COMMANDS)
def test_every_declared_flag_is_in_its_command_section_once(command):
    text = '\n'.join(command_reference(command))
    flags = declared_flags(command.settings)
    assert flags, 'a command without declared flags'
    for _, flag in flags:
        assert text.count('| `{}`'.format(flag.names[0])) == 1, flag.names


@pytest.mark.parametrize('command', commands(), ids=COMMANDS)
def test_help_lists_every_declared_flag_with_its_default(command):
    """--help and the reference come from the same declarations: each flag's names are in
    the usage, each default argparse shows is the one the reference shows."""
    parser = command.build_parser(prog=command.entry_point)
    actions = {action.dest: action for action in parser._actions}
    for row, (_, flag) in zip(flag_rows(command.settings), declared_flags(command.settings)):
        action = actions[flag.dest]
        assert set(action.option_strings) == {n for n in row.names if n.startswith('-')}
        assert action.default == flag.default and action.help == row.help
        assert action.required == bool(row.required and row.required != 'one of these')


# what each command needs at least, and the settings it makes of that
REQUIRED = {'eval': (['m.ckpt'], {'models': ('m.ckpt',)}),
            'export': (['m.ckpt', '--out', 'o'], {'checkpoint': 'm.ckpt', 'out': 'o'}),
            'demo': (['a.jpg', '--params', 'm.ckpt'],
                     {'images': ('a.jpg',), 'source': ('checkpoint', 'm.ckpt')})}


@pytest.mark.parametrize('command', commands(), ids=COMMANDS)
def test_defaults_of_the_settings_are_the_parsed_defaults(command):
    """Leaving every optional flag out gives the dataclass's defaults, and they pass the
    checks."""
    argv, values = REQUIRED.get(command.name, ([], {}))
    assert command.make_settings(command.parse_args(argv)) == command.settings(**values)


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
    env = child_env()
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
