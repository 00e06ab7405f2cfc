"""gluoncv_fp16.mxnet_compat: the version check, the private routes it keeps, and a scan
of the package, scripts/ and the root modules that keeps every private access of another
library in that module."""
import ast
import importlib
import pathlib
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluoncv_fp16 import mxnet_compat

PACKAGE = pathlib.Path(mxnet_compat.__file__).parent
REPO = PACKAGE.parent

# Private-looking names of other libraries that are public API: os._exit is documented
# ("exit the process ... without calling cleanup handlers"), and so is a namedtuple's
# _replace.
PUBLIC_UNDERSCORED = {'_exit', '_replace'}


def test_the_tested_version_is_silent_another_1x_warns_and_another_major_raises():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        mxnet_compat.check_mxnet_version('1.9.1')
        mxnet_compat.check_mxnet_version(mx.__version__)
    with pytest.warns(mxnet_compat.UntestedMXNetWarning, match=r'MXNet 1\.8\.0 is untested'):
        mxnet_compat.check_mxnet_version('1.8.0')
    with pytest.raises(ImportError, match=r'MXNet 2\.0\.0b1 is unsupported') as caught:
        mxnet_compat.check_mxnet_version('2.0.0b1')
    assert '\n' not in str(caught.value) and 'mxnet==1.9.1' in str(caught.value)


def test_importing_the_module_runs_the_check(monkeypatch):
    try:
        monkeypatch.setattr(mx, '__version__', '2.0.0')
        with pytest.raises(ImportError, match='MXNet 2.0.0 is unsupported'):
            importlib.reload(mxnet_compat)
        monkeypatch.setattr(mx, '__version__', '1.8.0')
        with pytest.warns(RuntimeWarning, match='MXNet 1.8.0 is untested'):
            importlib.reload(mxnet_compat)  # (a reload makes a new warning class)
    finally:
        monkeypatch.undo()
        importlib.reload(mxnet_compat)


def test_importing_the_package_with_mxnet_2_is_one_line_and_no_traceback_of_ours():
    code = ("import mxnet; mxnet.__version__ = '2.0.0'\n"
            "try:\n    import gluoncv_fp16\n"
            "except ImportError as err:\n    print(err); raise SystemExit(3)\n")
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(PACKAGE.parent),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines() == [
        'gluoncv_fp16 needs MXNet 1.9.x (tested); MXNet 2.0.0 is unsupported: its Gluon has no '
        'hybrid_forward and no 1.x Trainer internals; install mxnet==1.9.1']


def _tiny_net():
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4), nn.Dense(2))
    net.initialize()
    net(mx.nd.zeros((1, 3, 8, 8)))
    return net


def test_structural_names_are_those_save_parameters_writes_and_not_collect_params_keys(
        tmp_path):
    net = _tiny_net()
    named = mxnet_compat.params_by_structural_name(net)
    assert list(named)[:2] == ['0.weight', '0.bias']
    net.save_parameters(str(tmp_path / 'w.params'))
    assert sorted(named) == sorted(mx.nd.load(str(tmp_path / 'w.params')))
    # why the private route: the public keys are the prefixed global names
    assert not set(named) & set(net.collect_params().keys())
    assert {id(p) for p in named.values()} == {id(p) for p in net.collect_params().values()}


def test_trainer_routes_read_the_state_the_trainer_uses():
    net = _tiny_net()
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.1, 'momentum': 0.9, 'rescale_grad': 3.0})
    with autograd.record():
        loss = net(mx.nd.ones((4, 3, 8, 8))).sum()
    loss.backward()
    trainer.step(4)
    # the public rescale_grad now holds 3 / batch size; the Trainer's own factor is 3
    assert trainer.optimizer.rescale_grad == pytest.approx(0.75)
    assert mxnet_compat.trainer_grad_multiplier(trainer) == 3.0
    params = mxnet_compat.trainer_params(trainer)
    assert {id(p) for p in params} == {id(p) for p in net.collect_params().values()}
    states = mxnet_compat.trainer_updaters(trainer)[0].states
    weight = params.index(net[0].weight)
    assert isinstance(states[weight], mx.nd.NDArray)  # SGD's momentum, after one step
    counts = mxnet_compat.update_counts(trainer.optimizer)
    assert counts[0][weight] == 1
    mxnet_compat.set_update_counts(trainer.optimizer, {0: {weight: 5}})
    assert trainer.optimizer._index_update_count is mxnet_compat.update_counts(
        trainer.optimizer)[0]  # the optimizer's alias follows, as its own code expects
    assert mxnet_compat.update_counts(trainer.optimizer) == {0: {weight: 5}}


def test_a_missing_private_attribute_is_one_line_naming_it_and_the_tested_version():
    with pytest.raises(RuntimeError, match=r"object has no _updaters in MXNet .*tested with "
                                           r"MXNet 1\.9\.x"):
        mxnet_compat.trainer_updaters(object())
    assert mxnet_compat.amp_loss_scale(None) is None
    assert mxnet_compat.amp_scaler_fields(object()) is None
    assert mxnet_compat.set_amp_scaler_fields(object(), {}) is False


def test_amp_scaler_fields_round_trip_through_the_amp_precision_adapter(monkeypatch):
    """What a resumed --amp run restores: AMP's scale, next scale and unskipped count.
    (``amp.init`` cannot be undone in-process, so the trainers are stand-ins carrying
    AMP's own LossScaler where ``amp.init_trainer`` puts it, and that call is skipped.)"""
    from mxnet.contrib.amp.loss_scaler import LossScaler as AmpScaler
    from gluoncv_fp16.precision.amp_scaler import AmpLossScaler

    class Trainer:
        def __init__(self):
            self._amp_loss_scaler = AmpScaler()

    first = Trainer()
    fields = mxnet_compat.amp_scaler_fields(first)
    assert set(fields) == {'_loss_scale', '_next_loss_scale', '_unskipped'}
    first._amp_loss_scaler._loss_scale = first._amp_loss_scaler._next_loss_scale = 512.0
    first._amp_loss_scaler._unskipped = 37
    saving = AmpLossScaler()
    saving._trainer = first
    state = saving.state_dict()
    assert saving.scale_value == mxnet_compat.amp_loss_scale(first) == 512.0
    restored = AmpLossScaler()
    restored.load_state_dict(state)  # before a trainer exists: kept for attach
    second = Trainer()
    from mxnet.contrib import amp
    monkeypatch.setattr(amp, 'init_trainer', lambda trainer: None)  # the stand-in has it
    restored.attach(second)
    assert restored.scale_value == 512.0
    assert mxnet_compat.amp_scaler_fields(second) == {
        '_loss_scale': 512.0, '_next_loss_scale': 512.0, '_unskipped': 37}


def _defined_names(trees):
    """Private attribute names the package's own classes define (methods, class
    attributes, attributes set on ``self``/``cls``): reading them is not reaching into
    another library. Module-level names are left out, so that a private module function
    of the package cannot hide an MXNet attribute of the same name."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.add(item.name)
                    elif isinstance(item, ast.Assign):
                        names.update(t.id for t in item.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                    isinstance(node.value, ast.Name) and node.value.id in ('self', 'cls'):
                names.add(node.attr)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == 'setattr' and isinstance(node.args[0], ast.Name) and \
                    node.args[0].id == 'self' and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
    return {n for n in names if isinstance(n, str) and n.startswith('_')}


def _private(name):
    return isinstance(name, str) and name.startswith('_') and not name.startswith('__')


def _violations(path, tree, own):
    found = []
    for node in ast.walk(tree):
        where = '{}:{}'.format(path.relative_to(REPO), getattr(node, 'lineno', 0))
        if isinstance(node, ast.Attribute) and _private(node.attr) and \
                node.attr not in own and node.attr not in PUBLIC_UNDERSCORED:
            found.append('{} .{}'.format(where, node.attr))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ('getattr', 'setattr', 'hasattr', 'delattr') and \
                len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and \
                _private(node.args[1].value) and node.args[1].value not in own:
            found.append('{} {}(..., {!r})'.format(where, node.func.id, node.args[1].value))
        elif isinstance(node, ast.Import):
            found += ['{} import {}'.format(where, a.name) for a in node.names
                      if a.name == 'ctypes' or any(map(_private, a.name.split('.')))]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ''
            if module.split('.')[0] == 'ctypes' or any(map(_private, module.split('.'))):
                found.append('{} from {} import'.format(where, module))
            found += ['{} from {} import {}'.format(where, module, a.name)
                      for a in node.names if _private(a.name)]
    return found


def test_no_private_access_to_another_library_outside_mxnet_compat():
    files = sorted(PACKAGE.rglob('*.py')) + sorted((REPO / 'scripts').glob('*.py')) + \
        sorted(REPO.glob('*.py'))
    sources = {p: ast.parse(p.read_text(), str(p)) for p in files}
    compat = PACKAGE / 'mxnet_compat.py'
    own = _defined_names(tree for path, tree in sources.items() if path != compat)
    found = [v for path, tree in sources.items() if path != compat
             for v in _violations(path, tree, own)]
    assert not found, 'private MXNet/GluonCV access outside gluoncv_fp16/mxnet_compat.py ' \
        '(add a documented function there):\n' + '\n'.join(found)
    # the scan finds what it is meant to find
    probe = ast.parse('import ctypes\nfrom mxnet.base import _LIB\nt._updaters\n'
                      "getattr(t, '_amp_loss_scaler')\nself._clear_cached_op()\n")
    assert len(_violations(compat, probe, own)) == 5


def test_the_former_ctypes_route_is_gone_from_the_package():
    used = {node.attr if isinstance(node, ast.Attribute) else node.id
            for p in PACKAGE.rglob('*.py') for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, (ast.Attribute, ast.Name))}
    # (`import ctypes` is refused by the scan above; NumPy's ``array.ctypes.data`` is fine)
    assert not used & {'MXNDArrayFromDLPackEx', 'Py_IncRef', 'Py_DecRef', 'pythonapi',
                       'DLManagedTensor'}
    view = np.arange(6, dtype=np.float32)
    assert mx.nd.from_numpy(view, zero_copy=True).shape == (6,)  # the public route exists
