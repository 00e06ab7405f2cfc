"""The layout of tests/ and scripts/: what tests share lives in helpers.py and conftest.py,
no test imports another test module or loads a script by path, and scripts are thin shims
over the package (their logic is importable and tested there).

Read from the source with `ast`; nothing is imported or run.
"""
import ast
import os

import pytest

from helpers import ROOT

TESTS = os.path.join(ROOT, 'tests')
SCRIPTS = os.path.join(ROOT, 'scripts')
SCRIPT_LINES = 60
# Scripts allowed over SCRIPT_LINES lines: none, every script is a shim over the package.
# The set must be exactly the scripts over the limit: shrink one and it has to leave it too.
LONG_SCRIPTS = set()
# How a file gets loaded by its path instead of imported as a module.
PATH_LOADERS = ('spec_from_file_location', 'SourceFileLoader', 'runpy', 'exec(open(',
                'imp.load_source')


def _python_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith('.py'))


def _tree(path):
    with open(path, encoding='utf-8') as f:
        return ast.parse(f.read(), filename=path)


def _imported_top_modules(tree):
    """(line, first component) of every absolute import in `tree`, lazy ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name.split('.')[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module.split('.')[0]


def _script_names():
    return {os.path.splitext(name)[0] for name in _python_files(SCRIPTS)}


def _test_modules():
    """Test modules and the plain modules next to them (workers, helpers), not conftest."""
    return [name for name in _python_files(TESTS) if name != 'conftest.py']


def test_no_test_imports_another_test_module_conftest_or_a_script():
    scripts = _script_names()
    found = []
    for name in _python_files(TESTS):
        for line, module in _imported_top_modules(_tree(os.path.join(TESTS, name))):
            if module.startswith('test_') or module == 'conftest' or module in scripts:
                found.append('tests/{}:{} imports {}'.format(name, line, module))
    assert found == [], 'import what tests share from tests/helpers.py instead:\n' + \
        '\n'.join(found)


def test_no_test_loads_a_file_by_path_or_puts_scripts_on_sys_path():
    found = []
    for name in _test_modules():
        if name == 'test_layout.py':
            continue  # names the loaders above
        with open(os.path.join(TESTS, name), encoding='utf-8') as f:
            for number, line in enumerate(f, 1):
                if any(loader in line for loader in PATH_LOADERS) or (
                        'sys.path' in line and 'scripts' in line):
                    found.append('tests/{}:{}: {}'.format(name, number, line.strip()))
    assert found == [], 'test the package function the script calls instead:\n' + \
        '\n'.join(found)


def test_the_checks_above_catch_what_they_look_for():
    """The two checks read real imports and lines (not a vacuous pass)."""
    tree = ast.parse('import test_cli\nfrom conftest import x\ndef f():\n'
                     '    from launch import main\n')
    assert [m for _, m in _imported_top_modules(tree)] == ['test_cli', 'conftest', 'launch']
    assert 'launch' in _script_names() and 'test_layout.py' in _test_modules()


def test_scripts_are_short_shims_and_import_no_other_script():
    scripts = _script_names()
    lengths = {}
    imports = []
    for name in _python_files(SCRIPTS):
        path = os.path.join(SCRIPTS, name)
        with open(path, encoding='utf-8') as f:
            lengths[name] = len(f.read().splitlines())
        imports += ['scripts/{}:{} imports {}'.format(name, line, module)
                    for line, module in _imported_top_modules(_tree(path)) if module in scripts]
    assert imports == []
    long_now = {name for name, count in lengths.items() if count > SCRIPT_LINES}
    assert long_now - LONG_SCRIPTS == set(), (
        'move the logic into gluoncv_fp16 (bench/, distributed/, cli/) and keep the script a '
        'shim of at most {} lines: {}'.format(
            SCRIPT_LINES, {n: lengths[n] for n in long_now - LONG_SCRIPTS}))
    assert LONG_SCRIPTS - long_now == set(), 'now short, drop from LONG_SCRIPTS: {}'.format(
        sorted(LONG_SCRIPTS - long_now))


def _dotted(node):
    """'pytest.fixture' for the expression ``pytest.fixture`` (ast.unparse needs 3.9)."""
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + '.' + node.attr
    return node.id if isinstance(node, ast.Name) else ''


def _fixtures(tree):
    """Names of the module-level functions decorated with pytest.fixture."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if _dotted(target) in ('pytest.fixture', 'fixture'):
                    names.add(node.name)
    return names


def test_no_test_module_redefines_a_conftest_fixture():
    shared = _fixtures(_tree(os.path.join(TESTS, 'conftest.py')))
    assert {'net', 'synthetic_root'} <= shared
    found = {name: sorted(_fixtures(_tree(os.path.join(TESTS, name))) & shared)
             for name in _test_modules()}
    assert {k: v for k, v in found.items() if v} == {}


def _numerics_ids():
    tree = _tree(os.path.join(TESTS, 'conftest.py'))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [_dotted(t) for t in node.targets] == ['NUMERICS']:
            return ast.literal_eval(node.value)
    pytest.fail('tests/conftest.py has no NUMERICS set')


def _test_functions(tree):
    names = set()
    for node in tree.body:
        body = node.body if isinstance(node, ast.ClassDef) else [node]
        names |= {n.name for n in body if isinstance(n, ast.FunctionDef)}
    return names


def test_every_numerics_id_names_an_existing_test():
    ids = _numerics_ids()
    assert ids
    missing = []
    for test_id in sorted(ids):
        module, _, function = test_id.partition('::')
        path = os.path.join(TESTS, module)
        exists = os.path.isfile(path) and (
            not function or function in _test_functions(_tree(path)))
        missing += [] if exists else [test_id]
    assert missing == [], 'tests/conftest.py NUMERICS names tests that do not exist'
