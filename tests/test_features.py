"""The feature registry: features declared on their hooks are built from the config, in
their declared order, chief-only ones replaced on other workers by a state placeholder."""
import pytest

from gluoncv_fp16.train import features
from gluoncv_fp16.train.config import TrainConfig
from gluoncv_fp16.train.ema import ModelEMA
from gluoncv_fp16.train.evaluation import EvalHook
from gluoncv_fp16.train.features import BuildContext, build_features, feature, registered_features
from gluoncv_fp16.train.loop import HookBase
from gluoncv_fp16.train.patience import PatienceHook

CLASSES = ['circle', 'square', 'triangle']


def context(is_chief=True):
    return BuildContext(net=None, contexts=[], val_loader=[], val_set=None, classes=CLASSES,
                        is_chief=is_chief)


def kinds(hooks):
    return [(type(h).__name__, h.name) for h in hooks]


@pytest.fixture
def private_registry(monkeypatch):
    """Declarations made in a test go into a copy of the registry, dropped afterwards."""
    monkeypatch.setattr(features, '_FEATURES', dict(features._FEATURES))


def test_declared_features_come_in_their_declared_order():
    names = [f.name for f in registered_features()]
    assert names.index('ema') < names.index('eval') < names.index('patience')


def test_the_config_turns_features_on_and_each_is_built_from_its_fields():
    cfg = TrainConfig(ema=True, ema_decay=0.99, ema_ramp=150.0, patience=3, val_interval=2,
                      epochs=9)
    hooks = build_features(cfg, context())
    assert [type(h) for h in hooks][:3] == [ModelEMA, EvalHook, PatienceHook]
    ema, evaluation, patience = hooks[:3]
    assert (ema.decay, ema.ramp) == (0.99, 150.0) and patience.patience == 3
    assert (evaluation.interval, evaluation.last_epoch) == (2, 9)
    assert [type(h) for h in build_features(TrainConfig(), context())][:1] == [EvalHook]
    assert not any(isinstance(h, (ModelEMA, PatienceHook))
                   for h in build_features(TrainConfig(), context()))


def test_other_workers_get_a_state_placeholder_for_a_chief_only_feature():
    cfg = TrainConfig(ema=True, patience=3)
    hooks = build_features(cfg, context(is_chief=False))
    assert kinds(hooks)[:2] == [('ModelEMA', 'ema'), ('ChiefOnlyState', 'patience')]
    assert not any(isinstance(h, (EvalHook, PatienceHook)) for h in hooks)
    placeholder = hooks[1]
    placeholder.load_state_dict({'best_map': 0.5, 'best_epoch': 2})  # takes it, keeps nothing
    assert placeholder.state_dict() == {}
    assert 'patience' not in [h.name for h in build_features(TrainConfig(ema=True),
                                                               context(is_chief=False))]


def test_a_new_feature_joins_by_its_declaration_alone(private_registry):
    built = []

    @feature('probe', switch='mixup', after=('eval',), before=('patience',))
    class Probe(HookBase):
        name = 'probe'

        @classmethod
        def from_config(cls, cfg, context):
            built.append((cfg.mixup, context.is_chief))
            return cls()

    names = [type(h).__name__ for h in build_features(TrainConfig(mixup=True, patience=2),
                                                      context())]
    assert names.index('EvalHook') < names.index('Probe') < names.index('PatienceHook')
    assert built == [(True, True)]
    assert 'Probe' not in [type(h).__name__ for h in build_features(TrainConfig(), context())]


def test_a_feature_built_as_none_is_left_out(private_registry):
    @feature('nothing_to_do')
    class Idle(HookBase):
        @classmethod
        def from_config(cls, cfg, context):
            return None

    assert not any(isinstance(h, Idle) for h in build_features(TrainConfig(), context()))


def test_declaration_mistakes_are_refused(private_registry):
    with pytest.raises(TypeError, match='from_config'):
        feature('bare')(type('Bare', (HookBase,), {}))
    with pytest.raises(ValueError, match="'ema' is declared twice"):
        feature('ema')(type('OtherEMA', (HookBase,), {'from_config': classmethod(
            lambda cls, cfg, context: None)}))

    def declare(name, **order):
        feature(name, **order)(type(name, (HookBase,), {'from_config': classmethod(
            lambda cls, cfg, context: None)}))
    declare('first', after=('second',))
    declare('second', after=('first',))
    with pytest.raises(ValueError, match='cycle'):
        registered_features()

