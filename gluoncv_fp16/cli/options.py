"""The training command's flags, generated from their declarations.

Every flag is declared once, as a field of :class:`~gluoncv_fp16.train.config.TrainConfig`
(names, default, help, group, its check). From there this module makes the argparse
parser (:func:`build_parser`), the validated config (:func:`make_config`) and the flag
reference ``docs/options.md`` (:func:`reference`), which a test compares with this
rendering. Regenerate it after changing a declaration::

    python -m gluoncv_fp16.cli.options > docs/options.md
"""
import argparse
import sys

from ..train.config import FLAG_GROUPS, GLUONCV_FLAGS, TrainConfig
from ..utils.options import add_flags, flag_rows, from_namespace

__all__ = ['build_parser', 'make_config', 'reference', 'REGENERATE']

REGENERATE = 'python -m gluoncv_fp16.cli.options > docs/options.md'

_GROUP_NOTES = {
    GLUONCV_FLAGS: "Same meaning and defaults as GluonCV's "
                   "`scripts/detection/yolo/train_yolo3.py` (except `--dataset`, which "
                   "defaults to `synthetic`); each of them does something.",
}


def build_parser(description=None, prog=None):
    """The argparse parser of every training flag, in GluonCV's group and ours."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return add_flags(parser, TrainConfig, FLAG_GROUPS)


def make_config(args):
    """Parsed namespace -> validated `TrainConfig` (raises `ConfigError`, one line)."""
    return from_namespace(TrainConfig, args).validate()


def _cell(text):
    return text.replace('|', '\\|')


def reference():
    """The flag reference page (markdown) of every training flag."""
    lines = ['<!-- Generated from the declarations in gluoncv_fp16/train/config.py by `{}`; '
             'edit those, not this file. -->'.format(REGENERATE), '',
             '# Training flags', '',
             '`train_yolo3.py`, `gluoncv-fp16-train` and `python -m gluoncv_fp16.cli.train` '
             'take these flags. A mistake in them, alone or in combination, stops the run '
             'before any work with one line and exit code 2.']
    rows = flag_rows(TrainConfig)
    for group in FLAG_GROUPS:
        lines += ['', '## ' + group, '']
        if group in _GROUP_NOTES:
            lines += [_GROUP_NOTES[group], '']
        lines += ['| flag | value | default | what it does |', '|---|---|---|---|']
        for row_group, names, value, default, text in rows:
            if row_group != group:
                continue
            lines.append('| {} | {} | {} | {} |'.format(
                ', '.join('`{}`'.format(n) for n in names),
                '`{}`'.format(value) if value else '',
                '`{}`'.format(default) if default else '', _cell(text)))
    return '\n'.join(lines) + '\n'


def main(argv=None):
    """Print the flag reference (``docs/options.md``)."""
    argparse.ArgumentParser(description='Print docs/options.md, the training flag '
                            'reference: ' + REGENERATE).parse_args(argv)
    sys.stdout.write(reference())
    return 0


if __name__ == '__main__':
    sys.exit(main())
