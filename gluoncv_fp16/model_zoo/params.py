"""A network's parameters by structural name, and the one check that saved parameters fit.

Structural names (``'darknet.features.0.conv.weight'``) are those ``save_parameters``
writes and GluonCV's ``.params`` files hold. Every loader of saved weights -- the
networks' ``load_parameters``, :mod:`gluoncv_fp16.checkpoint`, ``--pretrained`` and
resume -- compares them with :func:`param_mismatch` before it writes anything.
"""
import collections

__all__ = ['named_params', 'structural_params', 'shape_fits', 'Mismatch', 'param_mismatch']


def named_params(net):
    """{structural name: Parameter} of `net`, in the order ``save_parameters`` uses."""
    return net._collect_params_with_prefix()  # Gluon 1.x has no public route to these names


def structural_params(net):
    """{structural name: NDArray} of `net` (first device), as `save_parameters` names them."""
    return {name: p.data(p.list_ctx()[0]) for name, p in named_params(net).items()}


def shape_fits(expected, saved):
    """MXNet's rule: same rank, and every known dimension equal (unknown: 0, or -1 in
    NumPy-shape mode). An entirely unknown shape (deferred initialisation) fits anything."""
    expected, saved = tuple(expected), tuple(saved)
    if not expected:
        return True
    return len(expected) == len(saved) and all(e in (0, -1, s) for e, s in zip(expected, saved))


class Mismatch(collections.namedtuple('Mismatch', 'missing extra name own_shape saved_shape')):
    """Why saved parameters do not fit a network.

    Attributes
    ----------
    missing, extra : list of str
        Names the network has and the saved set lacks, and the reverse (sorted, in the
        network's order for `missing`).
    name : str or None
        The first parameter whose shapes differ (None when names differ).
    own_shape, saved_shape : tuple or None
        Its shape in the network and in the saved set.
    """

    def names_text(self, examples=3):
        """'2 parameters missing, 0 unexpected; e.g. [...]'."""
        return '{} parameters missing, {} unexpected; e.g. {}'.format(
            len(self.missing), len(self.extra), (self.missing or self.extra)[:examples])

    def message(self, origin):
        """The one line that says `origin` (a file, quoted) does not fit the network."""
        if self.name is None:
            return ("{} does not match this network ({}). Was it saved from another "
                    "network?".format(origin, self.names_text()))
        return ("{}: parameter '{}' has shape {} but the network expects {} -- a different "
                "network or number of classes?".format(origin, self.name, self.saved_shape,
                                                        self.own_shape))


def param_mismatch(own, saved, allow_missing=False, ignore_extra=False, skip_shape=None):
    """Compare saved parameters with a network's, by structural name and shape.

    Parameters
    ----------
    own : dict of str -> object with ``.shape``
        The network's parameters (``named_params(net)``, or arrays).
    saved : dict of str -> object with ``.shape``
        The saved parameters (NDArray or numpy arrays).
    allow_missing, ignore_extra : bool
        Accept names only the network has / only the saved set has.
    skip_shape : callable, optional
        ``skip_shape(name)`` true for parameters whose shape may differ (e.g. the class-
        dependent prediction layers when classes are remapped).

    Returns
    -------
    Mismatch or None
        None when every common parameter fits (:func:`shape_fits`).
    """
    missing = [] if allow_missing else [name for name in own if name not in saved]
    extra = [] if ignore_extra else sorted(name for name in saved if name not in own)
    if missing or extra:
        return Mismatch(missing, extra, None, None, None)
    for name in (n for n in own if n in saved):
        if skip_shape is not None and skip_shape(name):
            continue
        own_shape, saved_shape = tuple(own[name].shape), tuple(saved[name].shape)
        if not shape_fits(own_shape, saved_shape):
            return Mismatch([], [], name, own_shape, saved_shape)
    return None
