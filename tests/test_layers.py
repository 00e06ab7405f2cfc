"""The package's layers: imports flow utils -> precision -> model_zoo/data -> checkpoint ->
train/distributed/deploy -> cli, never backwards (docs/STYLE's import-flow rule).

Each check imports every module of one package in a fresh interpreter and lists the
gluoncv_fp16 modules that came with it, so a lazy import inside a function is not
counted but any module-level import, however indirect, is.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOADED = textwrap.dedent('''
    import importlib, json, pkgutil, sys
    package = importlib.import_module(sys.argv[1])
    for info in pkgutil.walk_packages(getattr(package, '__path__', []), sys.argv[1] + '.'):
        importlib.import_module(info.name)
    print(json.dumps(sorted(m for m in sys.modules if m.startswith('gluoncv_fp16'))))
''')


def loaded_with(package):
    """gluoncv_fp16 modules in sys.modules after importing every module of `package`."""
    out = subprocess.run([sys.executable, '-c', LOADED, package], cwd=REPO, check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def under(modules, *packages):
    return [m for m in modules
            if any(m == p or m.startswith(p + '.') for p in packages)]


@pytest.mark.parametrize('package, forbidden', [
    ('gluoncv_fp16.deploy', ('gluoncv_fp16.train', 'gluoncv_fp16.cli')),
    ('gluoncv_fp16.checkpoint', ('gluoncv_fp16.train', 'gluoncv_fp16.deploy',
                                 'gluoncv_fp16.cli')),
])
def test_package_imports_no_higher_layer(package, forbidden):
    modules = loaded_with(package)
    assert len(under(modules, package)) > 1  # the walk found its modules
    assert under(modules, *forbidden) == []


def test_errors_module_imports_nothing_from_the_package():
    assert loaded_with('gluoncv_fp16.errors') == ['gluoncv_fp16', 'gluoncv_fp16.errors']


# What each package may import (besides itself and gluoncv_fp16/__init__), statically:
# function-level (lazy) imports count here too. The layers, lowest first; a package may
# import the layers below its own (mxnet_compat: the one module of private MXNet access).
_BASE = ('errors', 'mxnet_compat', 'utils')
_MODELS = _BASE + ('precision', 'model_zoo', 'data')
ALLOWED = {
    'errors': (),
    'utils': ('errors', 'mxnet_compat'),
    'precision': _BASE,
    'model_zoo': _BASE + ('precision',),
    'data': _BASE + ('precision',),
    'checkpoint': _MODELS,
    'distributed': _MODELS + ('checkpoint',),
    'deploy': _MODELS + ('checkpoint',),
    'train': _MODELS + ('checkpoint', 'distributed'),  # never the other way round
    'bench': _MODELS + ('checkpoint', 'distributed', 'deploy', 'train'),
    'cli': _MODELS + ('checkpoint', 'distributed', 'deploy', 'train', 'bench'),
}


def _imported_packages(package):
    """{first-level gluoncv_fp16 package or module: [files]} that `package`'s source imports."""
    import ast
    root = os.path.join(REPO, 'gluoncv_fp16')
    path = os.path.join(root, package)
    files = [path + '.py'] if os.path.isfile(path + '.py') else [
        os.path.join(folder, name) for folder, _, names in os.walk(path)
        for name in names if name.endswith('.py')]
    found = {}
    for file in files:
        own = os.path.relpath(file, root).replace(os.sep, '/').split('/')
        with open(file) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = own[:len(own) - node.level] + (node.module or '').split('.')
                parts = [p for p in parts if p]
                targets = [parts[0]] if parts else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module] if node.module else []
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith('gluoncv_fp16.'):
                    target = target.split('.')[1]
                elif not getattr(node, 'level', 0) or '.' in target:
                    continue
                found.setdefault(target, []).append(os.path.relpath(file, REPO))
    return found


@pytest.mark.parametrize('package', sorted(ALLOWED))
def test_source_imports_only_lower_layers(package):
    found = _imported_packages(package)
    wrong = {k: v for k, v in found.items() if k != package and k not in ALLOWED[package]}
    assert wrong == {}
