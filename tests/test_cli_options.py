"""The command line as a whole: the flag declarations vs docs/options.md and README."""
import os
import re

from gluoncv_fp16.cli.options import REGENERATE, reference
from gluoncv_fp16.train.config import TrainConfig
from gluoncv_fp16.utils.options import declared_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
