"""The flag reference of every command, generated from the declarations.

Each command's flags are declared once, as the fields of its settings dataclass
(training: :class:`~gluoncv_fp16.train.config.TrainConfig`; eval, export, demo and check:
the ``*Settings`` class of their module here), and each module's ``COMMAND``
(:class:`~.command.Command`) makes the parser and the validated settings from them. This
module renders ``docs/options.md``, which a test compares with this rendering.
Regenerate it after changing a declaration::

    python -m gluoncv_fp16.cli.options > docs/options.md
"""
import argparse
import importlib
import sys

from ..utils.options import flag_rows

__all__ = ['COMMAND_NAMES', 'commands', 'reference', 'REGENERATE']

REGENERATE = 'python -m gluoncv_fp16.cli.options > docs/options.md'
COMMAND_NAMES = ('train', 'eval', 'export', 'demo', 'check')  # gluoncv_fp16/cli/<name>.py


def commands():
    """The `Command` of every command module, in `COMMAND_NAMES` order."""
    return [importlib.import_module('{}.{}'.format(__package__, name)).COMMAND
            for name in COMMAND_NAMES]


def _cell(text):
    return text.replace('|', '\\|')


def _code(text):
    return '`{}`'.format(text) if text else ''


def command_reference(command):
    """The markdown section of one command: a table per ``--help`` group."""
    lines = ['## ' + command.entry_point, '',
             '`{}`, `python -m gluoncv_fp16.cli.{}`{}: {}'.format(
                 command.entry_point, command.name,
                 ' and `{}`'.format(command.also) if command.also else '',
                 command.description)]
    rows = flag_rows(command.settings)
    for group in command.groups:
        lines += ['', '### ' + group, '']
        if group in command.notes:
            lines += [command.notes[group], '']
        lines += ['| flag | value | default | what it does |', '|---|---|---|---|']
        for row in rows:
            if row.group != group:
                continue
            default = _code(row.default) or {'yes': 'required', 'one of these':
                                             'required: one of these'}.get(row.required, '')
            lines.append('| {} | {} | {} | {} |'.format(
                ', '.join(_code(n) for n in row.names), _code(row.value), default,
                _cell(row.help)))
    return lines


def reference():
    """The flag reference page (markdown) of every command."""
    lines = ['<!-- Generated from the option declarations (gluoncv_fp16/train/config.py, '
             'gluoncv_fp16/cli/<command>.py) by `{}`; edit those, not this file. -->'
             .format(REGENERATE), '',
             '# Command-line flags', '',
             'Every command takes these flags. A mistake in them, alone or in combination, '
             'stops the command before any work with one line and exit code 2.']
    for command in commands():
        lines += [''] + command_reference(command)
    return '\n'.join(lines) + '\n'


def main(argv=None):
    """Print the flag reference (``docs/options.md``)."""
    argparse.ArgumentParser(description='Print docs/options.md, the flag reference of '
                            'every command: ' + REGENERATE).parse_args(argv)
    sys.stdout.write(reference())
    return 0


if __name__ == '__main__':
    sys.exit(main())
