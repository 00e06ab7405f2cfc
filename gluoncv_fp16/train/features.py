"""Optional trainer features, each declared where it is written.

A feature is a hook class (`HookBase`) in a module of :mod:`gluoncv_fp16.train`,
decorated with :func:`feature`. The declaration says everything the builder needs:

* which `TrainConfig` field switches it on (`switch`; None: always on);
* how it is built: ``cls.from_config(cfg, context)`` with a `BuildContext` (the run's
  parts that exist before the loop: network, devices, validation data), returning the
  hook or None;
* where it goes relative to other features (`after` / `before`, by feature name);
* whether it runs on every worker or on the chief (rank 0) only.

:func:`build_features` turns a config into the feature hooks, in order. A chief-only
feature that is on gets, on the other workers, a `ChiefOnlyState` in its place: every
worker resumes from rank 0's checkpoint, which holds that feature's state, and the
placeholder takes it without complaint (and keeps nothing).

Every module of this package is imported the first time features are listed, so a new
feature joins by existing: one module with its decorated hook, plus its option field(s)
in `TrainConfig`. Nothing here knows any feature by name.
"""
import dataclasses
import importlib
import pkgutil
from typing import Optional, Tuple

from .loop import HookBase

__all__ = ['feature', 'Feature', 'BuildContext', 'ChiefOnlyState', 'build_features',
           'registered_features']

_FEATURES = {}


@dataclasses.dataclass(frozen=True)
class Feature:
    """One declared feature (see the module docstring)."""
    name: str
    hook: type
    switch: Optional[str]
    after: Tuple[str, ...]
    before: Tuple[str, ...]
    chief_only: bool

    def enabled(self, cfg):
        return self.switch is None or bool(getattr(cfg, self.switch))


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a feature may be built from besides the config: the run's parts that exist
    before the loop does. The network is initialised, in FP32, not yet cast or trained
    (a feature that changes which parameters train does it here: the loop and its
    trainer read ``grad_req`` when they are made).

    Attributes
    ----------
    net : gluon.HybridBlock
        The training network.
    contexts : list of mx.Context
    val_loader : iterable
        Validation batches.
    val_set : dataset
    classes : list of str
    is_chief : bool
        Rank 0 (always True for one process).
    """
    net: object
    contexts: list
    val_loader: object = None
    val_set: object = None
    classes: list = ()
    is_chief: bool = True


def feature(name, switch=None, after=(), before=(), chief_only=False):
    """Class decorator: declare the hook class as the feature `name`.

    Parameters
    ----------
    name : str
        The feature's name, used by other declarations' `after` / `before`.
    switch : str or None
        The `TrainConfig` field that turns it on when truthy; None: always on.
    after, before : tuple of str
        Features this one's hook must come after / before in the hook list (features
        not present in a run are ignored).
    chief_only : bool
        Built on rank 0 only (it needs what only the chief has, e.g. validation).
    """
    def register(cls):
        if not hasattr(cls, 'from_config'):
            raise TypeError("feature {!r}: {} needs a from_config(cfg, context) classmethod"
                            .format(name, cls.__name__))
        known = _FEATURES.get(name)
        if known is not None and known.hook.__qualname__ != cls.__qualname__:
            raise ValueError("feature {!r} is declared twice ({} and {})".format(
                name, known.hook.__qualname__, cls.__qualname__))
        _FEATURES[name] = Feature(name, cls, switch, tuple(after), tuple(before),
                                  bool(chief_only))
        return cls
    return register


def _discover():
    """Import every module of this package once, so that each feature registers."""
    package = __name__.rpartition('.')[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module('{}.{}'.format(package, info.name))


def registered_features():
    """Every declared feature, in hook order (`after` / `before`; ties by name)."""
    _discover()
    return _ordered(list(_FEATURES.values()))


def _ordered(features):
    """Topological order of `features` by their `after` / `before` declarations."""
    names = {f.name for f in features}
    needs = {f.name: {a for a in f.after if a in names} for f in features}
    for f in features:
        for later in f.before:
            if later in names:
                needs[later].add(f.name)
    by_name = {f.name: f for f in features}
    ordered = []
    while needs:
        ready = sorted(n for n, deps in needs.items() if not deps)
        if not ready:
            raise ValueError("features order themselves in a cycle: {}".format(sorted(needs)))
        ordered.append(by_name[ready[0]])
        del needs[ready[0]]
        for deps in needs.values():
            deps.discard(ready[0])
    return ordered


class ChiefOnlyState(HookBase):
    """On ranks > 0, the stand-in of a chief-only feature's stateful hook: it takes the
    hook's state from a checkpoint on resume (every rank resumes from rank 0's file) and
    keeps nothing. Without it the resume would refuse the file as holding state "this
    run does not have"."""

    def __init__(self, name):
        self.name = name


def build_features(cfg, context):
    """The hooks of the features `cfg` turns on, in order, for this worker."""
    hooks = []
    for declared in registered_features():
        if not declared.enabled(cfg):
            continue
        if declared.chief_only and not context.is_chief:
            if declared.hook.name:
                hooks.append(ChiefOnlyState(declared.hook.name))
            continue
        hook = declared.hook.from_config(cfg, context)
        if hook is not None:
            hooks.append(hook)
    return hooks
