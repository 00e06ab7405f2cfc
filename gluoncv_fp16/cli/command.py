"""What every command of the command line shares: its declaration and its `main`.

A :class:`Command` names a command, the dataclass whose fields declare its flags
(:mod:`gluoncv_fp16.utils.options`), the ``--help`` groups they are listed under, and the
function that does the work on the validated settings. From it come the argparse parser,
the validated settings, the command's section of ``docs/options.md``
(:mod:`.options`), and :meth:`Command.main`, the one ``main`` of every console entry
point: parse, validate, run; a user's mistake (:data:`gluoncv_fp16.errors.USER_ERRORS`)
becomes one line on stderr and exit code 2.
"""
import argparse
import dataclasses
import logging
import sys
import typing

from ..errors import USER_ERRORS, ConfigError
from ..utils.options import add_flags, from_namespace, validated

__all__ = ['Command', 'report_error']


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" after each help, unless there is none to tell (None,
    off) or the help already says what the default is."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or \
                'default' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


def report_error(err):
    """The one line a user's mistake prints (stderr); returns exit code 2."""
    print('error: {}'.format(err), file=sys.stderr)
    return 2


@dataclasses.dataclass(frozen=True)
class Command:
    """One command: ``gluoncv-fp16-<name>`` and ``python -m gluoncv_fp16.cli.<name>``.

    Attributes
    ----------
    name : str
        ``'eval'``: the module ``gluoncv_fp16.cli.eval``, the console entry point
        ``gluoncv-fp16-eval``.
    settings : type
        The dataclass whose :func:`~gluoncv_fp16.utils.options.setting` fields declare the
        flags. Validated by its ``validate()`` when it has one, else by every per-option
        check and its ``combination_problems()`` (``ConfigError``).
    groups : tuple of str
        The ``--help`` sections (and reference tables), in order.
    run : callable
        ``run(settings) -> exit code``; raises a user error for a mistake it finds.
    description : str
        The first line of ``--help``.
    also : str
        The other ways to run it that users know (``scripts/eval.py``), for the reference.
    notes : mapping
        A paragraph per group for the reference.
    log_level : int or None
        The console logging level `main` sets up (None: `run` sets up its own).
    """
    name: str
    settings: type
    groups: typing.Tuple[str, ...]
    run: typing.Callable
    description: str
    also: str = ''
    notes: typing.Mapping[str, str] = dataclasses.field(default_factory=dict)
    log_level: typing.Optional[int] = logging.WARNING

    @property
    def entry_point(self):
        return 'gluoncv-fp16-' + self.name

    def build_parser(self, prog=None):
        """The argparse parser of every declared flag, in `groups`."""
        parser = argparse.ArgumentParser(
            prog=prog, description=self.description,
            formatter_class=_HelpFormatter)
        return add_flags(parser, self.settings, self.groups)

    def parse_args(self, argv=None):
        """The parsed command line (argparse's own errors exit 2 with usage)."""
        return self.build_parser().parse_args(argv)

    def make_settings(self, args):
        """Parsed namespace -> validated settings (raises a user error, one line)."""
        settings = from_namespace(self.settings, args)
        if hasattr(settings, 'validate'):
            return settings.validate()
        return validated(settings, ConfigError)

    def main(self, argv=None):
        """Parse `argv` (default: the command line), validate, run; returns the exit
        code, 2 for a user's mistake (one line on stderr, no traceback)."""
        if self.log_level is not None:
            logging.basicConfig(level=self.log_level, format='%(message)s')
        args = self.parse_args(argv)
        try:
            return self.run(self.make_settings(args))
        except USER_ERRORS as err:
            return report_error(err)
