"""The network and precision-mode registries: everything that lists, checks or explains
a network or a mode comes from them, and no code outside them compares mode names."""
import ast
import pathlib

import pytest

import gluoncv_fp16
from gluoncv_fp16.cli import train as train_cli
from gluoncv_fp16.cli.options import reference
from gluoncv_fp16.model_zoo import zoo
from gluoncv_fp16.model_zoo import (get_model, get_model_list, network_help, network_names,
                                    network_problem, networks_with_weights)
from gluoncv_fp16.precision.amp_scaler import AmpLossScaler
from gluoncv_fp16.precision.loss_scaler import LossScaler
from gluoncv_fp16.precision.policy import (FULL_PRECISION, flags_of, get_policy, policies,
                                           policy_names, precision_from_flags)
from gluoncv_fp16.train.config import ConfigError, TrainConfig
from gluoncv_fp16.utils.options import declared_flags

PACKAGE = pathlib.Path(gluoncv_fp16.__file__).resolve().parent
REPO = PACKAGE.parent
REGISTRIES = {PACKAGE / 'precision' / 'policy.py', PACKAGE / 'model_zoo' / 'zoo.py'}


# ----- precision modes ---------------------------------------------------------------------
def test_each_mode_is_one_immutable_policy_with_consistent_attributes():
    assert policy_names()[0] == FULL_PRECISION and len(set(policy_names())) == len(policies())
    for name in policy_names():
        policy = get_policy(name.upper())
        assert policy.name == name and policy.master_dtype == 'float32'
        assert policy.multi_precision == (policy.compute_dtype != 'float32')
        assert ('float16' in policy.device_dtypes) == policy.runs_float16
    full = get_policy(FULL_PRECISION)
    assert not (full.runs_float16 or full.needs_loss_scaling or full.flag)
    with pytest.raises(AttributeError, match='immutable'):
        full.flag = '--fp32'


def test_unknown_mode_names_the_close_one_every_mode_and_the_flags():
    with pytest.raises(ValueError) as err:
        get_policy('fp61')
    message = str(err.value)
    assert "did you mean 'fp16'" in message and all(n in message for n in policy_names())
    assert flags_of(policies()) in message


def test_fp32_warmup_phase_comes_from_the_policy():
    warmable = policies(lambda p: p.allows_fp32_warmup)
    assert warmable and all(not p.uses_amp for p in warmable)  # AMP cannot start mid-run
    for policy in policies():
        expected = FULL_PRECISION if policy.allows_fp32_warmup else policy.name
        assert policy.phase_at(1, fp32_warmup_epochs=2) == expected
        assert policy.phase_at(2, fp32_warmup_epochs=2) == policy.name


def test_each_policy_makes_its_loss_scaler():
    for policy in policies():
        scaler = policy.make_loss_scaler('dynamic', init_scale=8.0)
        assert isinstance(scaler, AmpLossScaler) == policy.uses_amp
        assert scaler.enabled == policy.needs_loss_scaling
        # the loop divides the gradients by this; AMP divides through the trainer itself
        expected = 8.0 if policy.needs_loss_scaling and not policy.uses_amp else 1.0
        assert scaler.unscale_divisor == expected
    static = get_policy('fp16').make_loss_scaler('64')
    assert type(static) is LossScaler and static.mode == 'static'


def test_precision_switches_are_declared_by_the_registry():
    flagged = policies(lambda p: p.flag)
    declared = [f for field, f in declared_flags(TrainConfig) if field == 'precision']
    assert [(f.names, f.help) for f in declared] == [((p.flag,), p.summary) for p in flagged]
    text = reference()
    assert all('| `{}` |  |  | {} |'.format(p.flag, p.summary) in text for p in flagged)
    assert precision_from_flags(*[False] * len(flagged)) == FULL_PRECISION
    for i, policy in enumerate(flagged):
        assert precision_from_flags(*[j == i for j in range(len(flagged))]) == policy.name
    with pytest.raises(ValueError, match='{}.*{}.*choose one'.format(flagged[0].flag,
                                                                    flagged[-1].flag)):
        precision_from_flags(*[True] * len(flagged))


# ----- networks ----------------------------------------------------------------------------
def test_listings_take_wildcards():
    assert get_model_list('yolo3_mobilenet*') == [
        n for n in get_model_list() if n.startswith('yolo3_mobilenet')]
    assert len(get_model_list('*_custom')) == len(network_names()) == 3
    assert network_names('mobilenet*') == ('mobilenet1.0', 'mobilenet0.25')
    assert get_model_list('YOLO3_DARKNET53_VOC') == ['yolo3_darknet53_voc']


def test_unknown_network_suggests_the_close_names_and_lists_the_registry():
    assert network_problem('mobilenet1.0') is None
    message = network_problem('darknet35')
    assert "Did you mean 'darknet53'?" in message
    assert 'Choose one of darknet53, mobilenet1.0 or mobilenet0.25' in message
    assert 'Did you mean' not in network_problem('resnet50')
    args = train_cli.parse_args(['--network', 'mobilenet', '--gpus', ''])
    with pytest.raises(ConfigError, match=r"--network 'mobilenet' .*Did you mean "
                                          r"'mobilenet1.0' or 'mobilenet0.25'"):
        train_cli.make_config(args)


def test_network_help_and_docs_list_every_registered_network():
    (flag,) = [f for field, f in declared_flags(TrainConfig) if field == 'network']
    assert flag.help == network_help() and flag.default == zoo.DEFAULT_NETWORK
    assert all(n in flag.help for n in network_names())
    assert '| `--network` | `TEXT` | `{}` | {} |'.format(zoo.DEFAULT_NETWORK,
                                                         network_help()) in reference()


def test_published_weights_are_read_from_gluoncv_per_class_set():
    assert networks_with_weights('voc') == ('darknet53', 'mobilenet1.0')
    assert networks_with_weights('custom') == ()


def test_a_registered_network_is_listed_built_and_suggested(monkeypatch):
    monkeypatch.setattr(zoo, '_NETWORKS', dict(zoo._NETWORKS))
    built = []

    @zoo.register_network('tinynet', 'a test entry')
    def yolo3_tinynet(class_set='voc', **kwargs):
        built.append((class_set, kwargs))
        return 'the tinynet network'

    assert 'yolo3_tinynet_coco' in get_model_list('*tiny*')
    assert get_model('yolo3_tinynet_coco', ctx=None, root='r') == 'the tinynet network'
    assert built == [('coco', {'root': 'r'})]  # None kwargs dropped, as for GluonCV names
    assert 'tinynet (a test entry)' in network_help()
    assert "Did you mean 'tinynet'" in network_problem('tinynett')
    with pytest.raises(ValueError, match='registered twice'):
        zoo.register_network('tinynet', 'again')(yolo3_tinynet)


# ----- nothing outside the registries compares or lists the names --------------------------
def _sources():
    return sorted([*PACKAGE.rglob('*.py'), *(REPO / 'scripts').glob('*.py'),
                   REPO / 'train_yolo3.py'])


def _literals(node):
    """The string constants `node` is, or holds as a tuple/list/set literal."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]


def mode_name_comparisons(source):
    """``(line, code)`` of each comparison of a registered mode name (``x == 'fp16'``,
    ``x in ('fp16', 'amp')``) in the Python `source`."""
    names = set(policy_names())
    return [(node.lineno, ast.unparse(node)) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Compare) and
            any(names & set(_literals(side)) for side in [node.left, *node.comparators])]


def hand_written_name_lists(source, names, in_text=True):
    """``(line, code)`` of each tuple/list/set literal naming two or more of `names` (a
    hand-written copy of a registry's list), and with `in_text` each such string that is
    not a docstring (hand-written help or error text)."""
    tree = ast.parse(source)
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            named = set(_literals(node)) & set(names)
        elif in_text and isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                id(node) not in docstrings:
            named = {n for n in names if n in node.value.replace(',', ' ').split()}
        else:
            continue
        if len(named) > 1:
            found.append((node.lineno, ast.unparse(node)[:80]))
    return found


def test_the_scans_find_what_they_look_for():
    code = ("if policy.name == 'fp16' or mode in ('fp16', 'amp'):\n"
            "    HELP = 'darknet53, mobilenet1.0 or mobilenet0.25'\n"
            "NETS = ['darknet53', 'mobilenet1.0']\n"
            "ok = policy.needs_loss_scaling and name == 'fp16-noscale'\n")
    assert [line for line, _ in mode_name_comparisons(code)] == [1, 1]
    assert sorted(line for line, _ in hand_written_name_lists(code, network_names())) == [2, 3]


def test_no_mode_name_comparison_outside_the_precision_registry():
    found = {str(path.relative_to(REPO)): hits for path in _sources()
             if path not in REGISTRIES
             for hits in [mode_name_comparisons(path.read_text(encoding='utf-8'))] if hits}
    assert not found, 'ask the policy (gluoncv_fp16/precision/policy.py) instead: {}'.format(
        found)


def test_no_hand_written_list_of_networks_or_modes_outside_the_registries():
    found = {}
    for path in _sources():
        if path in REGISTRIES:
            continue
        source = path.read_text(encoding='utf-8')
        # mode names appear in example commands ('--modes fp32,fp16'): literals only
        hits = hand_written_name_lists(source, network_names()) + \
            hand_written_name_lists(source, policy_names(), in_text=False)
        if hits:
            found[str(path.relative_to(REPO))] = hits
    assert not found, 'take the names from the registries: {}'.format(found)
