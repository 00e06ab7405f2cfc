"""--freeze: frozen backbone stages get no gradient and no update in every precision mode,
their FP32 values and BatchNorm statistics stay as loaded, on one device or two; resume is
bit-identical and refuses another --freeze; bad values are one line and exit 2."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from helpers import MODEL, ROOT, SHAPE_CLASSES as CLASSES, ListLoader, yolo_training_batch
from gluoncv_fp16.cli import train as train_cli
from gluoncv_fp16.errors import CheckpointError, ConfigError
from gluoncv_fp16.model_zoo import get_model
from gluoncv_fp16.precision.loss_scaler import LossScaler
from gluoncv_fp16.precision.policy import get_policy
from gluoncv_fp16.train.checkpoint import load_run_state, save_run_state
from gluoncv_fp16.train.config import TrainConfig
from gluoncv_fp16.train.features import BuildContext, build_features
from gluoncv_fp16.train.freeze import BACKBONE_STAGES, FreezeHook, parse_freeze
from gluoncv_fp16.train.loop import LoopOptions, TrainLoop
from gluoncv_fp16.train.resume import resume_from

FROZEN = ('stages.0.', 'stages.1.')  # --freeze 2
ONE_CPU = (mx.cpu(),)


def make_net(contexts=ONE_CPU):
    """A net as if loaded from pretrained weights: its backbone's BatchNorm statistics
    are those of its data (frozen with the initial mean 0 / variance 1, an untrained
    backbone's activations shrink into FP16's subnormal range)."""
    mx.random.seed(7)
    net = get_model(MODEL['name'], classes=CLASSES, pretrained_base=False)
    net.initialize(mx.init.Xavier(), ctx=list(contexts))
    net(mx.nd.zeros((1, 3, 64, 64), ctx=contexts[0]))
    params = net._collect_params_with_prefix()
    if not _LOADED:
        images = mx.nd.random.uniform(-1, 1, shape=(4, 3, 64, 64), ctx=contexts[0])
        for _ in range(20):
            with mx.autograd.record():
                x = images
                for stage in net.stages:
                    x = stage(x)
            x.backward()  # MXNet's CPU BatchNorm updates its running statistics here
        _LOADED.update({n: p.data(contexts[0]).copy() for n, p in params.items()})
    for name, param in params.items():
        param.set_data(_LOADED[name])
    net.hybridize()
    return net


_LOADED = {}  # the weights every make_net starts from


@pytest.fixture(scope='module')
def batches():
    net = get_model(MODEL['name'], classes=CLASSES, pretrained_base=False)
    net.initialize()
    return [(image, gt) + tuple(targets) for image, gt, targets in
            (yolo_training_batch(net, size=64, batch=2, seed=20 + i) for i in range(2))]


def make_trainer(net, multi_precision):
    return gluon.Trainer(net.collect_params(), 'sgd',
                         {'learning_rate': 0.01, 'momentum': 0.9, 'wd': 5e-4,
                          'multi_precision': multi_precision}, update_on_kvstore=False)


def frozen_loop(batches, precision='fp32', warmup=0, contexts=ONE_CPU, stages=2):
    """A loop whose network is frozen by the feature, built as `build_training` builds it."""
    net = make_net(contexts)
    cfg = TrainConfig(freeze=stages)
    hooks = [h for h in build_features(cfg, BuildContext(net, list(contexts)))
             if isinstance(h, FreezeHook)]
    # low initial scale: YOLOv3's summed loss overflows FP16 gradients at 2^15 (see
    # tests/test_engine_loop.py)
    scaler = LossScaler('dynamic', init_scale=0.25) if precision == 'fp16' else \
        LossScaler('none')
    return TrainLoop(net, list(contexts), ListLoader(batches), make_trainer, scaler,
                     get_policy(precision), hooks,
                     LoopOptions(2, fp32_warmup_epochs=warmup))


def host(weights):
    return {k: v.asnumpy().copy() for k, v in weights.items()}


def is_frozen(name):
    return name.startswith(FROZEN)


def test_freeze_values_are_read_and_checked():
    assert parse_freeze('backbone') == parse_freeze(' 3 ') == 3 and parse_freeze('0') == 0
    with pytest.raises(ConfigError, match="--freeze 'foo': give backbone"):
        parse_freeze('foo')
    with pytest.raises(ConfigError, match="--freeze 4: YOLOv3's backbone has 3 stages"):
        TrainConfig(freeze=4).validate()
    assert TrainConfig().freeze == 0 and TrainConfig(freeze=3).validate().freeze == 3


def test_every_backbone_has_the_stages_the_option_allows():
    from gluoncv_fp16.model_zoo.zoo import network_names
    for backbone in network_names():
        net = get_model('yolo3_{}_custom'.format(backbone), classes=CLASSES,
                        pretrained_base=False)
        assert len(net.stages) == BACKBONE_STAGES, backbone


@pytest.mark.parametrize('value, message', [
    ('99', "--freeze 99: YOLOv3's backbone has 3 stages"),
    ('foo', "--freeze 'foo': give backbone"),
    ('-1', "--freeze '-1': give backbone"),
])
def test_bad_freeze_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, synthetic_root,
                                                          value, message):
    out = tmp_path / 'out'
    code = train_cli.main(['--network', 'mobilenet0.25', '--dataset', 'synthetic',
                           '--dataset-root', synthetic_root, '--gpus', '', '--save-prefix',
                           str(out) + os.sep, '--freeze', value])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_frozen_stages_have_no_gradient_and_their_norm_layers_use_running_statistics():
    net = make_net()
    hook = FreezeHook(net, 2)
    params = net._collect_params_with_prefix()
    assert {n: p.grad_req for n, p in params.items() if is_frozen(n)} == \
        {n: 'null' for n in params if is_frozen(n)}
    trainable = [n for n, p in params.items() if p.grad_req != 'null']
    assert trainable and not any(is_frozen(n) for n in trainable)
    assert any(n.startswith('stages.2.') for n in trainable)  # the third stage trains
    # frozen stages compute in training mode what they compute at inference (BatchNorm on
    # running statistics); a trained stage normalises with the batch's statistics
    x = mx.nd.random.uniform(-1, 1, shape=(2, 3, 64, 64))
    outputs = {}
    for mode in (mx.autograd.predict_mode, mx.autograd.record):
        y = x
        with mode():
            for index, stage in enumerate(net.stages):
                y = stage(y)
                outputs.setdefault(index, []).append(y.asnumpy())
    for index, (inference, training) in outputs.items():
        assert np.allclose(inference, training, rtol=1e-5, atol=1e-6) == (index < 2), index
    expected = sum(int(np.prod(p.shape)) for n, p in params.items()
                   if is_frozen(n) and 'running_' not in n)
    assert hook.values == expected and hook.state_dict()['stages'] == 2
    with pytest.raises(ValueError, match='cannot freeze 4 stages: the network has 3'):
        FreezeHook(make_net(), 4)


@pytest.mark.parametrize('precision, warmup', [('fp32', 0), ('fp16', 0), ('fp16', 1)],
                         ids=['fp32', 'fp16', 'fp32-warmup-then-fp16'])
def test_frozen_parameters_and_statistics_stay_as_loaded_bit_for_bit(batches, precision,
                                                                     warmup):
    loop = frozen_loop(batches, precision, warmup)
    before = host(loop.fp32_weights())
    loop.train(0, 2)
    after = host(loop.fp32_weights())
    assert loop.phase == precision and loop.iteration == 4
    frozen = [n for n in before if is_frozen(n)]
    assert any('running_mean' in n for n in frozen) and any('weight' in n for n in frozen)
    assert [n for n in frozen if not np.array_equal(before[n], after[n])] == []
    # the network's own (FP16 in FP16 phases) copy is the loaded value, rounded once
    for name, param in loop.param_names.items():
        if is_frozen(name):
            assert np.array_equal(param.data().asnumpy(),
                                  before[name].astype(param.dtype)), name
    changed = [n for n in before if not is_frozen(n) and not np.array_equal(before[n],
                                                                            after[n])]
    assert any(n.endswith('weight') for n in changed)
    assert any('running_mean' in n for n in changed)  # unfrozen BatchNorm still learns


def test_two_devices_keep_frozen_stages_identical_and_unchanged(batches):
    contexts = (mx.cpu(0), mx.cpu(1))
    loop = frozen_loop(batches, 'fp16', contexts=contexts)
    before = host(loop.fp32_weights())
    loop.train(0, 1)
    after = host(loop.fp32_weights())
    assert all(np.array_equal(before[n], after[n]) for n in before if is_frozen(n))
    assert any(not np.array_equal(before[n], after[n]) for n in before if not is_frozen(n))
    # frozen ones as loaded on both; trained ones updated alike (running statistics of
    # unfrozen BatchNorm layers follow each device's half of the batch)
    for name, param in loop.param_names.items():
        if is_frozen(name) or param.grad_req != 'null':
            first, second = (d.asnumpy() for d in param.list_data())
            assert np.array_equal(first, second), name


def test_resume_with_freeze_equals_the_uninterrupted_run_and_refuses_another_freeze(
        batches, tmp_path):
    """FP32 warm-up epoch, checkpoint, resume, then the switch to FP16: bit-identical."""
    straight = frozen_loop(batches, 'fp16', warmup=1)
    straight.train(0, 2)
    first = frozen_loop(batches, 'fp16', warmup=1)
    first.train(0, 1)
    path = str(tmp_path / 'run.ckpt')
    save_run_state(path, first.capture(copy=False), {'model': MODEL})
    assert load_run_state(path).meta['hooks']['freeze']['stages'] == 2
    resumed = frozen_loop(batches, 'fp16', warmup=1)
    resumed.train(resume_from(resumed, path, MODEL), 2)
    a, b = straight.capture(), resumed.capture()
    assert (resumed.iteration, resumed.phase) == (straight.iteration, 'fp16') == (4, 'fp16')
    assert set(a.weights) == set(b.weights) and set(a.arrays()) == set(b.arrays())
    assert [n for n in a.weights if not np.array_equal(a.weights[n].asnumpy(),
                                                       b.weights[n].asnumpy())] == []
    assert [n for n, v in a.arrays().items() if not np.array_equal(
        v.asnumpy(), b.arrays()[n].asnumpy())] == []
    with pytest.raises(CheckpointError, match=r"was trained with --freeze 2, this run has "
                                              r"--freeze 1; resume with the same --freeze"):
        resume_from(frozen_loop(batches, stages=1), path, MODEL)


def test_a_run_without_freeze_refuses_a_frozen_checkpoint_and_vice_versa(batches, tmp_path):
    frozen, plain = frozen_loop(batches), frozen_loop(batches, stages=0)
    assert not plain.hooks  # --freeze 0: the feature is off
    paths = {}
    for name, loop in (('frozen', frozen), ('plain', plain)):
        loop.set_phase('fp32')  # a trainer: what a run state needs
        paths[name] = str(tmp_path / (name + '.ckpt'))
        save_run_state(paths[name], loop.capture(copy=False), {'model': MODEL})
    with pytest.raises(CheckpointError, match=r"holds state of \['freeze'\] that this run "
                                              r"does not have"):
        resume_from(frozen_loop(batches, stages=0), paths['frozen'], MODEL)
    with pytest.raises(CheckpointError, match='was trained with no --freeze, this run has '
                                              '--freeze 2'):
        resume_from(frozen_loop(batches), paths['plain'], MODEL)


def test_amp_run_leaves_frozen_stages_as_loaded(tmp_path, synthetic_root):
    """AMP patches MXNet for the whole process: its own process, through run_training."""
    script = (
        "import logging, numpy as np, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from gluoncv_fp16.train.build import build_training\n"
        "from gluoncv_fp16.train.config import TrainConfig\n"
        "cfg = TrainConfig(network='mobilenet0.25', data_shape=64, batch_size=2,\n"
        "    dataset='synthetic', dataset_root=sys.argv[1], num_workers=0, contexts=('cpu:0',),\n"
        "    save_prefix=sys.argv[2], epochs=1, max_iters=2, no_random_shape=True, plots=False,\n"
        "    precision='amp', self_check='off', freeze=3, lr=0.01,\n"
        "    amp_fp16_ops=())\n"
        "loop, start = build_training(cfg)\n"
        "loop.set_phase('amp')\n"
        "before = {k: v.asnumpy().copy() for k, v in loop.fp32_weights().items()}\n"
        "loop.train(start, cfg.epochs, max_iters=cfg.max_iters)\n"
        "after = {k: v.asnumpy() for k, v in loop.fp32_weights().items()}\n"
        "same = {k: np.array_equal(before[k], after[k]) for k in before}\n"
        "frozen = all(v for k, v in same.items() if k.startswith('stages.'))\n"
        "moved = not all(v for k, v in same.items() if not k.startswith('stages.'))\n"
        "print('phase', loop.phase, 'iterations', loop.iteration, 'frozen', frozen,\n"
        "      'moved', moved)\n")
    done = subprocess.run([sys.executable, '-c', script, synthetic_root,
                           str(tmp_path) + os.sep], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'phase amp iterations 2 frozen True moved True' in done.stdout, \
        done.stdout + done.stderr[-2000:]
    assert '--freeze 3: backbone stages 1-3 of 3 frozen (net.stages[:3]: ' in done.stderr


def cli_args(data_root, out, *extra):
    return ['--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '4',
            '--dataset', 'synthetic', '--dataset-root', data_root, '-j', '0', '--gpus', '',
            '--save-prefix', str(out) + os.sep, '--no-random-shape', '--no-plots',
            '--seed', '5', '--lr', '0.002', '--freeze', 'backbone', *extra]


def test_cli_run_resumed_after_an_epoch_equals_the_straight_run(tmp_path, synthetic_root,
                                                                capsys, caplog):
    """Through the command line: the log names what is frozen, the interrupted and resumed
    run ends bit-identical to the straight one, and another --freeze is refused."""
    with caplog.at_level('INFO', logger='gluoncv_fp16'):
        assert train_cli.main(cli_args(synthetic_root, tmp_path / 'a', '--epochs', '2')) == 0
    assert any('--freeze 3: backbone stages 1-3 of 3 frozen (net.stages[:3]: ' in r.getMessage()
               for r in caplog.records)
    b = tmp_path / 'b'
    assert train_cli.main(cli_args(synthetic_root, b, '--epochs', '1')) == 0
    assert train_cli.main(cli_args(synthetic_root, b, '--epochs', '2', '--resume',
                                   'auto')) == 0
    last = 'yolo3_mobilenet0.25_synthetic_last.ckpt'
    straight, resumed = (load_run_state(str(d / last)) for d in (tmp_path / 'a', b))
    assert resumed.meta['iteration'] == straight.meta['iteration'] > 0
    assert resumed.meta['hooks'] == straight.meta['hooks']
    assert resumed.meta['hooks']['freeze']['stages'] == 3
    for mine, theirs in ((straight.weights, resumed.weights),
                         (straight.arrays(), resumed.arrays())):
        assert [k for k in mine if not np.array_equal(mine[k].asnumpy(),
                                                      theirs[k].asnumpy())] == []
    capsys.readouterr()
    code = train_cli.main(cli_args(synthetic_root, b, '--freeze', '1', '--epochs', '3',
                                   '--resume', 'auto'))  # the last --freeze counts
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert 'was trained with --freeze 3, this run has --freeze 1' in err
