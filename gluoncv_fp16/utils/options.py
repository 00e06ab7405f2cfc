"""Settings declared once: a dataclass field that also says how a user types it.

A field made with :func:`setting` carries its command-line flags (:class:`Flag`: names,
help, group, the default as typed), how the flags' values become the field's value
(`convert`, when that is more than taking the one flag's value), and the check of that
value on its own (`check`). Everything else is generated from the declarations:

* :func:`add_flags` -- the argparse arguments, in groups, in field order;
* :func:`from_namespace` -- the typed dataclass from a parsed namespace;
* :func:`failed_checks` -- the per-option checks, in field order;
* :func:`validated` -- every per-option check, then the object's combination checks;
* :func:`flag_rows` -- the rows of the flag reference (``docs/options.md``).

A flag whose name has no leading dash is positional (``flag('model', ...)``); a setting
whose flags are alternatives (``exclusive=True``) becomes an argparse mutually exclusive
group, required with ``required=True``.

A field's default is its flags' defaults run through `convert`, so the default a user
gets on the command line and the default of the dataclass cannot disagree. Fields made
without :func:`setting` are settings no flag reaches (set with ``dataclasses.replace``).

In the spirit of HfArgumentParser / simple-parsing; no gluoncv_fp16 knowledge here.
"""
import argparse
import dataclasses
import typing

__all__ = ['Flag', 'Setting', 'FlagRow', 'flag', 'setting', 'rule', 'one_of', 'add_flags',
           'from_namespace', 'failed_checks', 'validated', 'flag_rows', 'declared_flags',
           'redeclared']

_KEY = 'gluoncv_fp16.setting'


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag.

    Attributes
    ----------
    names : tuple of str
        What a user types, e.g. ``('-j', '--num-workers')``; the last name gives the
        argparse destination (``num_workers``). One name without a dash: a positional
        argument.
    help : str
    group : str
        The ``--help`` section (and reference table) it is listed under.
    default : object
        What the flag holds when it is not given, as typed (``'160,180'``, not the tuple).
    type : callable or None
        Parser of the typed text (``int``, ``float``, ``str``); None: the field's own type
        when the flag sets the field directly, else ``str``. Its errors are argparse's.
    switch : bool
        A flag without a value (``store_true``; its default is False).
    negatable : bool
        An on/off flag, ``--x`` / ``--no-x`` (its default may be None: neither given).
    choices, metavar, nargs
        As in argparse.
    required : bool
        The flag must be given (positional arguments always are, unless `nargs` allows
        none).
    """
    names: typing.Tuple[str, ...]
    help: str
    group: str
    default: object = None
    type: typing.Optional[typing.Callable] = None
    switch: bool = False
    negatable: bool = False
    choices: typing.Optional[tuple] = None
    metavar: typing.Optional[str] = None
    nargs: typing.Optional[str] = None
    required: bool = False

    @property
    def dest(self):
        return self.names[-1].lstrip('-').replace('-', '_')

    @property
    def positional(self):
        return not self.names[0].startswith('-')


def flag(*names, help, group, default=None, type=None, switch=False, negatable=False,
         choices=None, metavar=None, nargs=None, required=False):
    """A :class:`Flag` (keyword arguments as its attributes)."""
    if switch and default is None:
        default = False
    if not names[0].startswith('-') and (len(names) > 1 or switch or negatable):
        raise TypeError('a positional argument has one name and takes a value')
    return Flag(tuple(names), help, group, default, type, switch, negatable,
                tuple(choices) if choices else None, metavar, nargs, required)


@dataclasses.dataclass(frozen=True)
class Setting:
    """The declaration a :func:`setting` field carries in its metadata."""
    flags: typing.Tuple[Flag, ...]
    convert: typing.Optional[typing.Callable] = None
    check: typing.Optional[typing.Callable] = None
    exclusive: bool = False
    required: bool = False

    def value(self, *raw):
        """The field's value from its flags' values (in `flags` order)."""
        return self.convert(*raw) if self.convert is not None else raw[0]


def setting(*flags, convert=None, check=None, exclusive=False, required=False):
    """A dataclass field set from `flags`.

    Parameters
    ----------
    *flags : Flag
        One flag, whose value becomes the field's value, or several with `convert`.
    convert : callable, optional
        ``convert(*flag_values) -> field value``; may raise the caller's error type for
        text it cannot read. Required with several flags.
    check : callable, optional
        ``check(value) -> None or str``: the one-line message when the value alone is
        wrong (see :func:`rule`, :func:`one_of`).
    exclusive : bool
        The flags are alternatives: giving two is an argparse usage error (exit 2).
    required : bool
        With `exclusive`: one of the flags must be given.
    """
    if not flags or (len(flags) > 1 and convert is None):
        raise TypeError('setting() needs one flag, or several flags and convert=')
    if required and not exclusive:
        raise TypeError('required= is for exclusive flags; a single flag says required=')
    declared = Setting(tuple(flags), convert, check, exclusive, required)
    return dataclasses.field(default=declared.value(*[f.default for f in flags]),
                             metadata={_KEY: declared})


def redeclared(cls, name, optional=False, note='', **changes):
    """``(name, type, field)`` for :func:`dataclasses.make_dataclass`: the setting `name`
    of dataclass `cls` in another settings class, so that two commands sharing an option
    share its one declaration (flags, conversion, check) instead of copies of it.

    Parameters
    ----------
    cls : type
        The dataclass that declares the setting.
    name : str
        Its field name.
    optional : bool
        None (the flag not given: the command fills it in later) passes the check.
    note : str
        Appended to each flag's help (what differs in this command, e.g. the default).
    **changes
        :class:`Flag` attributes to change in each flag (``group``, ``default``).
    """
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    declared = field.metadata[_KEY]
    flags = tuple(dataclasses.replace(f, help=f.help + note, **changes)
                  for f in declared.flags)
    check = declared.check
    if optional and check is not None:
        def check(value, own=declared.check):
            return None if value is None else own(value)
    again = dataclasses.replace(declared, flags=flags, check=check)
    return name, field.type, dataclasses.field(
        default=again.value(*[f.default for f in flags]), metadata={_KEY: again})


def rule(ok, message):
    """A check: fine when ``ok(value)``, else ``message.format(value)`` (or
    ``message(value)`` when `message` is callable)."""
    def check(value):
        if ok(value):
            return None
        return message(value) if callable(message) else message.format(value)
    return check


def one_of(flag_name, choices):
    """A check that the value is one of `choices`."""
    return rule(lambda value: value in choices,
                lambda value: '{} {!r}: choose one of {}'.format(flag_name, value,
                                                                 list(choices)))


def _settings(cls):
    for field in dataclasses.fields(cls):
        declared = field.metadata.get(_KEY)
        if declared is not None:
            yield field, declared


def declared_flags(cls):
    """``(field name, Flag)`` for every flag of `cls`, in field order."""
    return [(field.name, f) for field, declared in _settings(cls) for f in declared.flags]


def _optional_of(annotation):
    """`T` for ``Optional[T]``, else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and len(args) == 2 and \
            type(None) in args:
        return next(a for a in args if a is not type(None))
    return None


def _argparse_kwargs(f, field_type):
    """argparse keyword arguments of flag `f`; `field_type` when it sets the field
    directly, else None."""
    kwargs = dict(default=f.default, help=f.help)
    if not f.positional:
        kwargs['dest'] = f.dest
    if f.required:
        kwargs['required'] = True
    if f.nargs:
        kwargs['nargs'] = f.nargs
    if f.switch:
        return dict(kwargs, action='store_true')
    if f.negatable:
        return dict(kwargs, action=argparse.BooleanOptionalAction)
    if field_type is not None:
        field_type = _optional_of(field_type) or field_type
    kwargs['type'] = f.type or field_type or str
    if f.choices:
        kwargs['choices'] = f.choices
    if f.metavar:
        kwargs['metavar'] = f.metavar
    return kwargs


def _field_type(field, declared):
    return field.type if declared.convert is None else None


def add_flags(parser, cls, groups):
    """Add every flag of dataclass `cls` to `parser`, in the argument groups `groups`
    (titles, in the order they are listed), each group in field order."""
    sections = {title: parser.add_argument_group(title) for title in groups}
    for field, declared in _settings(cls):
        for f in declared.flags:
            if f.group not in sections:
                raise ValueError('flag {} names the unknown group {!r}'.format(
                    f.names[-1], f.group))
        if declared.exclusive:
            target = sections[declared.flags[0].group].add_mutually_exclusive_group(
                required=declared.required)
        for f in declared.flags:
            section = target if declared.exclusive else sections[f.group]
            section.add_argument(*f.names, **_argparse_kwargs(f, _field_type(field, declared)))
    return parser


def from_namespace(cls, namespace):
    """An instance of `cls` from a namespace parsed with :func:`add_flags`; fields no
    flag sets keep their defaults. Converters run here, in field order."""
    return cls(**{field.name: declared.value(*[getattr(namespace, f.dest)
                                               for f in declared.flags])
                  for field, declared in _settings(cls)})


def failed_checks(obj):
    """The messages of the per-option checks `obj` fails, in field order."""
    for field, declared in _settings(type(obj)):
        if declared.check is not None:
            message = declared.check(getattr(obj, field.name))
            if message:
                yield message


def validated(obj, error):
    """`obj` after its checks: raise ``error(message)`` for the first per-option check
    it fails (field order), then for the first message of ``obj.combination_problems()``
    (checks of several options together, when `obj` has that method)."""
    for message in failed_checks(obj):
        raise error(message)
    for message in getattr(obj, 'combination_problems', tuple)():
        raise error(message)
    return obj


def _value_form(f, field_type):
    if f.switch or f.negatable:
        return ''
    if f.metavar:
        form = f.metavar
    elif f.choices:
        form = '{' + ','.join(f.choices) + '}'
    else:
        kind = _argparse_kwargs(f, field_type)['type']
        form = {int: 'INT', float: 'FLOAT'}.get(kind, 'TEXT')
    return form + ' ...' if f.nargs in ('+', '*') else form


def _default_form(f):
    if f.switch or f.default is None:
        return ''
    return "''" if f.default == '' else str(f.default)


class FlagRow(typing.NamedTuple):
    """One row of the flag reference."""
    group: str
    names: typing.Tuple[str, ...]  # ('-j', '--num-workers'); --x and --no-x for an on/off flag
    value: str                     # the argument's form: INT, {ram,disk}, a metavar; '' switch
    default: str                   # as typed; '' when none
    help: str
    required: str                  # '' or how it is required: 'yes', 'one of these'


def flag_rows(cls):
    """A :class:`FlagRow` per flag of `cls`, in field order."""
    rows = []
    for field, declared in _settings(cls):
        field_type = _field_type(field, declared)
        for f in declared.flags:
            names = f.names
            if f.negatable:
                names += tuple('--no-' + n[2:] for n in f.names if n.startswith('--'))
            required = 'yes' if f.required or (f.positional and f.nargs not in ('?', '*')) \
                else ''
            if declared.exclusive and declared.required:
                required = 'one of these'
            rows.append(FlagRow(f.group, names, _value_form(f, field_type),
                                _default_form(f), f.help, required))
    return rows
