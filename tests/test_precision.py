"""Precision policies, the loss scaler, and optimizer state across FP32 <-> FP16 casts."""
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluoncv_fp16.precision.cpu_half import make_half_safe
from gluoncv_fp16.precision.loss_scaler import LossScaler, finite_flag, make_loss_scaler
from gluoncv_fp16.precision.optimizer_state import (capture_optimizer, install_optimizer,
                                                    master_arrays)
from gluoncv_fp16.precision.policy import get_policy


# ----- policies ----------------------------------------------------------------------------
def test_policies_from_names():
    fp16 = get_policy('fp16')
    assert (fp16.compute_dtype, fp16.needs_loss_scaling) == ('float16', True)
    assert get_policy('FP32').needs_loss_scaling is False
    assert get_policy('amp').uses_amp


def test_policy_is_immutable_and_unknown_names_say_what_is_valid():
    with pytest.raises(AttributeError, match='immutable'):
        get_policy('fp16').compute_dtype = 'float32'
    with pytest.raises(ValueError, match=r"'bf16'.*fp32.*fp16.*amp"):
        get_policy('bf16')


def test_policy_casts_only_to_its_compute_dtype():
    x = mx.nd.ones((1, 3))
    assert get_policy('fp16').cast_input(x).dtype == np.float16
    assert get_policy('fp32').cast_input(x) is x


def test_amp_cannot_be_switched_off_once_on():
    """AMP patches operators process-wide, so it runs in its own process here."""
    code = (
        "from gluoncv_fp16.precision.policy import activate_amp, get_policy, amp_active\n"
        "activate_amp(get_policy('amp'), target_precision_ops=[])\n"
        "assert amp_active()\n"
        "try:\n"
        "    activate_amp(get_policy('fp16'))\n"
        "except RuntimeError as err:\n"
        "    print('REFUSED', err)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120)
    assert 'REFUSED' in out.stdout and 'cannot be turned off' in out.stdout, out.stderr[-2000:]


# ----- loss scaler -------------------------------------------------------------------------
def test_dynamic_scale_backs_off_on_overflow_and_grows_after_clean_window():
    scaler = LossScaler('dynamic', init_scale=1024, growth_interval=3)
    scaler.update(False)
    assert scaler.scale_value == 512 and scaler.total_skips == 1
    for _ in range(3):
        scaler.update(True)
    assert scaler.scale_value == 1024 and scaler.clean_steps == 0


def test_static_and_disabled_scalers_never_change_scale():
    static = make_loss_scaler('128')
    static.update(False)
    assert static.mode == 'static' and static.scale_value == 128
    off = make_loss_scaler('none')
    losses = [mx.nd.ones((2,))]
    assert off.scale(losses)[0] is losses[0] and not off.enabled


def test_consecutive_skips_raise_naming_iteration_scale_and_parameter():
    param = gluon.Parameter('w_bad', shape=(2,))
    param.initialize()
    param.list_grad()[0][:] = np.inf
    scaler = LossScaler('dynamic', init_scale=8, max_consecutive_skips=2)
    scaler.update(False, [param])
    with pytest.raises(FloatingPointError, match=r'iteration 2.*loss scale 2.*w_bad'):
        scaler.update(False, [param])


def test_skipped_step_leaves_weights_untouched_and_clean_step_updates():
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1},
                            update_on_kvstore=False)
    scaler = LossScaler('dynamic', init_scale=4)
    params = list(net.collect_params().values())
    before = net.weight.data().asnumpy().copy()
    with autograd.record():
        loss = net(mx.nd.array([[1, 2, np.inf]])).sum()
    scaler.backward([loss])
    trainer.allreduce_grads()
    finite = bool(finite_flag(params).asscalar())
    assert not finite and scaler.step(trainer, 1, finite) is False
    assert np.array_equal(net.weight.data().asnumpy(), before)
    with autograd.record():
        loss = net(mx.nd.array([[1, 2, 3]])).sum()
    scaler.backward([loss])
    trainer.allreduce_grads()
    assert scaler.step(trainer, 1, bool(finite_flag(params).asscalar())) is True
    # The update is the unscaled gradient: x * lr, whatever the loss scale was.
    np.testing.assert_allclose(before - net.weight.data().asnumpy(),
                               np.tile([0.1, 0.2, 0.3], (2, 1)), rtol=1e-5)


def test_scaler_state_dict_round_trip_and_rejects_foreign_dicts():
    scaler = LossScaler('dynamic', init_scale=64)
    scaler.update(False)
    scaler.update(True)
    other = LossScaler('dynamic')
    other.load_state_dict(scaler.state_dict())
    assert other.state_dict() == scaler.state_dict()
    with pytest.raises(ValueError, match='not a LossScaler state_dict'):
        other.load_state_dict({})
    with pytest.raises(ValueError, match="'static'"):
        other.load_state_dict(make_loss_scaler('8').state_dict())


@pytest.mark.parametrize('kwargs, rule', [
    ({'init_scale': 0}, 'init_scale > 0'), ({'growth_factor': 1}, 'growth_factor > 1'),
    ({'backoff_factor': 1.5}, 'backoff_factor'), ({'mode': 'auto'}, "'auto'")])
def test_scaler_validates_its_settings(kwargs, rule):
    with pytest.raises(ValueError, match=rule):
        LossScaler(**kwargs)


def test_cli_loss_scale_values_are_validated():
    with pytest.raises(ValueError, match="'big'"):
        make_loss_scaler('big')


# ----- precision switch --------------------------------------------------------------------
def _small_net():
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(4, 3), gluon.nn.BatchNorm(), gluon.nn.Dense(2))
    make_half_safe(net)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    net(mx.nd.zeros((1, 3, 8, 8)))  # materialise deferred shapes
    return net


def _make_trainer(net, multi_precision):
    return gluon.Trainer(net.collect_params(), 'sgd',
                         {'learning_rate': 0.1, 'momentum': 0.9, 'multi_precision': multi_precision},
                         update_on_kvstore=False)


def _names(net):
    return {id(p): n for n, p in net._collect_params_with_prefix().items()}


def _fp32_values(net, trainer):
    """What the training loop calls its FP32 weights: masters where they exist."""
    masters = master_arrays(trainer, _names(net)) if trainer is not None else {}
    return {n: masters.get(n, p.data().astype('float32'))
            for n, p in net._collect_params_with_prefix().items()}


def _cast(net, trainer, dtype):
    """The loop's precision switch: capture, cast, set weights, new trainer, install."""
    names = _names(net)
    state = capture_optimizer(trainer, names, copy=False) if trainer is not None else None
    values = _fp32_values(net, trainer)
    net.cast(dtype)
    for n, p in net._collect_params_with_prefix().items():
        p.set_data(values[n].astype(p.dtype))
    trainer = _make_trainer(net, dtype == 'float16')
    install_optimizer(trainer, names, values, state)
    return trainer


def _step(net, trainer, x):
    with autograd.record():
        loss = net(x.astype(net[0].weight.dtype)).astype('float32').sum()
    loss.backward()
    trainer.allreduce_grads()
    trainer.update(x.shape[0])


def _state_of(trainer, net, param):
    """(momentum, master or None) of `param` in the trainer's live state."""
    index = trainer._params.index(param)
    state = trainer._updaters[0].states[index]
    return (state[0], state[1]) if isinstance(state, tuple) else (state, None)


def test_switch_to_fp16_keeps_fp32_weights_as_masters_and_momentum():
    net = _small_net()
    trainer = _make_trainer(net, False)
    x = mx.nd.random.uniform(shape=(2, 3, 8, 8))
    for _ in range(2):
        _step(net, trainer, x)
    weight32 = net[0].weight.data().asnumpy().copy()
    momentum = _state_of(trainer, net, net[0].weight)[0].asnumpy().copy()
    trainer = _cast(net, trainer, 'float16')
    new_momentum, master = _state_of(trainer, net, net[0].weight)
    assert np.dtype(net[0].weight.dtype) == np.float16
    assert np.dtype(net[1].gamma.dtype) == np.float32
    assert np.array_equal(master.asnumpy(), weight32)      # SGD: (momentum, master)
    assert np.array_equal(new_momentum.asnumpy(), momentum)
    assert trainer._optimizer.num_update == 2 and trainer._optimizer.multi_precision
    _step(net, trainer, x)
    assert trainer._optimizer.num_update == 3


def test_switch_back_to_fp32_restores_exact_master_weights():
    net = _small_net()
    trainer = _cast(net, None, 'float16')
    x = mx.nd.random.uniform(shape=(2, 3, 8, 8))
    _step(net, trainer, x)
    master = _state_of(trainer, net, net[0].weight)[1].asnumpy().copy()
    trainer = _cast(net, trainer, 'float32')
    assert np.dtype(net[0].weight.dtype) == np.float32
    assert np.array_equal(net[0].weight.data().asnumpy(), master)
    _step(net, trainer, x)


def test_fresh_fp16_start_keeps_the_exact_fp32_weights_as_masters():
    """A plain cast would leave the masters at the FP16 rounding of the FP32 weights."""
    net = _small_net()
    weight = net[0].weight
    weight.set_data(weight.data() + 1e-4)  # values FP16 cannot hold exactly
    weight32 = weight.data().asnumpy().copy()
    assert not np.array_equal(weight32.astype(np.float16).astype(np.float32), weight32)
    trainer = _cast(net, None, 'float16')
    momentum, master = _state_of(trainer, net, weight)
    assert np.dtype(weight.dtype) == np.float16 and trainer._optimizer.multi_precision
    assert np.array_equal(master.asnumpy(), weight32)
    assert not momentum.asnumpy().any()                      # fresh momentum
    x = mx.nd.random.uniform(shape=(2, 3, 8, 8))
    _step(net, trainer, x)
    master = _state_of(trainer, net, weight)[1].asnumpy()
    assert np.array_equal(weight.data().asnumpy(), master.astype(np.float16))


def test_optimizer_state_round_trip_is_exact_and_named():
    """Captured state installed into a new trainer continues bit-identically."""
    x = mx.nd.random.uniform(shape=(2, 3, 8, 8))
    nets, trainers = [], []
    for _ in range(2):
        mx.random.seed(3)
        net = _small_net()
        trainer = _cast(net, None, 'float16')
        _step(net, trainer, x)
        nets.append(net)
        trainers.append(trainer)
    a, b = nets
    state = capture_optimizer(trainers[1], _names(b))
    assert set(state.layout) == {n for n, p in b._collect_params_with_prefix().items()
                                 if p.grad_req != 'null'}
    values = {k: v.copy() for k, v in _fp32_values(b, trainers[1]).items()}
    fresh = _make_trainer(b, True)
    install_optimizer(fresh, _names(b), values, state)
    _step(a, trainers[0], x)
    _step(b, fresh, x)
    for (n, pa), pb in zip(a._collect_params_with_prefix().items(),
                           b._collect_params_with_prefix().values()):
        assert np.array_equal(pa.data().asnumpy(), pb.data().asnumpy()), n


def test_finite_flag_finds_one_bad_value_among_many_arrays_of_both_dtypes():
    """The CPU route checks every array (one all_finite each), over both dtypes."""
    params = []
    for k in range(140):  # more than one multi_all_finite chunk on a GPU
        param = gluon.Parameter('p{}'.format(k), shape=(3,),
                                dtype='float16' if k % 3 == 0 else 'float32')
        param.initialize(ctx=mx.cpu())
        param.grad()[:] = 1.0
        params.append(param)
    assert finite_flag(params).asscalar() == 1.0
    for index, bad in ((139, np.nan), (0, np.inf), (70, -np.inf)):
        params[index].grad()[1] = bad
        assert finite_flag(params).asscalar() == 0.0, (index, bad)
        params[index].grad()[:] = 1.0
    assert finite_flag(params).asscalar() == 1.0
