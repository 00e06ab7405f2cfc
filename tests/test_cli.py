"""The training command (gluoncv_fp16.cli.train, train_yolo3.py): GluonCV flags,
contradictions in one line, short end-to-end runs."""
import csv
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import mxnet as mx
import pytest

from helpers import ROOT, run_cli, small_args
from gluoncv_fp16.cli import train as train_cli

from gluoncv_fp16.train.checkpoint import read_checkpoint
from gluoncv_fp16.train.config import ConfigError, TrainConfig
from gluoncv_fp16.utils.options import declared_flags


def read_rows(out):
    path = os.path.join(str(out), 'yolo3_mobilenet0.25_synthetic_metrics.csv')
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


# ----- contradictions: one clear line, before any work ---------------------------------------
@pytest.mark.parametrize('extra, message', [
    (['--fp16', '--amp'], '--fp16 and --amp'),
    (['--data-shape', '100'], 'multiple of 32'),
    (['--batch-size', '3', '--ctx', 'cpu:0,cpu:1'], 'not divisible by the 2 devices'),
    (['--fp32-warmup-epochs', '1'], 'needs --fp16'),
    (['--loss-scale', 'huge', '--fp16'], '--loss-scale'),
    (['--lr-decay-epoch', 'ten'], '--lr-decay-epoch'),
    (['--gpus', 'zero'], '--gpus'),
    (['--accumulate', '0'], '--accumulate must be >= 1'),
    (['--checkpoint-every', '-1'], '--checkpoint-every must be >= 0'),
    (['-j', '-1'], '--num-workers must be >= 0'),
    (['--ctx', 'cpu:0,cpu:0', '--batch-size', '4'], 'names a device twice'),
    (['--classes', 'box,box,cross'], 'box.*more than once'),
    (['--loss-scale', '64'], 'only applies with --fp16 or --amp'),
    (['--loss-scale', 'abc'], "--loss-scale must be 'dynamic', 'none' or a positive number"),
    (['--clip-grad', '-1'], '--clip-grad must be >= 0'),
    (['--max-expand', '0.5'], '--max-expand must be >= 1'),
    (['--ema-decay', '0.99'], '--ema-decay needs --ema'),
    (['--ema', '--ema-decay', '1.5'], '--ema-decay must be between 0 and 1'),
    (['--ema-ramp', '100'], '--ema-ramp needs --ema'),
    (['--ema', '--ema-ramp', '0'], '--ema-ramp must be > 0'),
    (['--patience', '-1'], '--patience must be >= 0'),
    (['--ctx', 'tpu:0'], '--ctx'),
    (['--network', 'resnet50'], '--network'),
    (['--kvstore', 'dist_async'], 'dist_async is not supported.*Use dist_sync'),
    (['--kvstore', 'nccl2'], "--kvstore 'nccl2': choose one of"),
    (['--log-interval', '0'], '--log-interval must be positive, got 0'),
    (['--kvstore', 'dist_sync', '--fp16', '--fp32-warmup-epochs', '1'],
     'a dist kvstore keeps each key.s dtype'),
    (['--horovod', '--syncbn'], '--syncbn with --horovod'),
    (['--horovod', '--ctx', 'cpu:0,cpu:1'], 'one device per process'),
    (['--horovod', '--kvstore', 'dist_sync'], 'two ways to distribute'),
    (['--kvstore', 'dist_sync'], 'needs processes started by the launcher .DMLC_ROLE'),
    (['--self-check', 'fallback', '--horovod'], 'cannot be used with several workers'),
])
def test_contradictions_fail_with_one_line(tmp_path, extra, message):
    args = train_cli.parse_args(small_args(str(tmp_path), tmp_path, *extra))
    with pytest.raises(ConfigError, match=message):
        train_cli.make_config(args)


@pytest.mark.parametrize('prefix', ['/proc/nope/', '/dev/null/x/'])
def test_unwritable_save_prefix_is_one_line_and_writes_nothing(tmp_path, capsys, synthetic_root,
                                                              prefix):
    argv = small_args(synthetic_root, tmp_path)
    argv[argv.index('--save-prefix') + 1] = prefix
    code, out = run_cli(argv, capsys)
    assert code == 2 and 'cannot write to' in out.err and 'Traceback' not in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_rejected_run_writes_no_files(tmp_path, capsys, synthetic_root):
    code, _ = run_cli(small_args(synthetic_root, tmp_path / 'out', '--accumulate', '0'), capsys)
    assert code == 2 and not (tmp_path / 'out').exists()


def test_missing_dataset_folder_is_one_line(tmp_path, capsys):
    code, out = run_cli(small_args(str(tmp_path / 'nope'), tmp_path) +
                        ['--dataset', 'custom'], capsys)
    assert code == 2 and 'does not exist' in out.err and 'Traceback' not in out.err


def test_gpu_requested_on_a_machine_without_one(tmp_path, capsys, synthetic_root):
    argv = small_args(synthetic_root, tmp_path)
    argv[argv.index('--gpus') + 1] = '0'
    code, out = run_cli(argv, capsys)
    assert code == 2 and "MXNet sees 0 GPU(s)" in out.err and "--gpus ''" in out.err


# GluonCV's documented train_yolo3.py command lines: its YOLOv3 tutorial
# (docs/tutorials/detection/train_yolo_v3.py), its model zoo's training commands
# (yolo3_mobilenet1.0_voc.sh, yolo3_darknet53_voc.sh) and the Horovod one, whose words
# every process gets under `horovodrun -np 8 -H localhost:8`.
GLUONCV_COMMANDS = [
    '--gpus 0',
    '--gpus 0,1,2,3 --network darknet53 --syncbn',
    '--network mobilenet1.0 --dataset voc --gpus 0,1,2,3,4,5,6,7 --batch-size 64 -j 32 '
    '--log-interval 100 --lr-decay-epoch 160,180 --epochs 200 --syncbn --warmup-epochs 4',
    '--network darknet53 --dataset coco --gpus 0,1,2,3,4,5,6,7 --batch-size 64 -j 32 '
    '--log-interval 100 --lr-decay-epoch 220,250 --epochs 280 --syncbn --warmup-epochs 2 '
    '--mixup --no-mixup-epochs 20',
    '--network darknet53 --dataset voc --batch-size 8 --horovod',
]
no_gpu = pytest.mark.skipif(mx.context.num_gpus() > 0, reason='this machine has a GPU')


@pytest.fixture
def new_user(tmp_path, monkeypatch):
    """A user's machine: no datasets and an empty GluonCV cache under an own HOME, no
    network, and a working folder where the default --save-prefix ('') writes. Returns
    (home, GluonCV cache, working folder)."""
    home, cache, work = tmp_path / 'home', tmp_path / 'home' / 'mxnet', tmp_path / 'work'
    work.mkdir(parents=True)
    monkeypatch.setenv('HOME', str(home))  # the default dataset folders are under ~
    monkeypatch.setenv('MXNET_HOME', str(cache))
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')  # nothing listens there
    monkeypatch.chdir(work)
    return home, cache, work


def refusal(argv, capsys):
    """The one stderr line of a refused run (exit 2, no traceback)."""
    code, out = run_cli(argv, capsys)
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and 'Traceback' not in out.err, out.err[-3000:]
    return lines[0]


@no_gpu
@pytest.mark.parametrize('command', GLUONCV_COMMANDS)
def test_gluoncv_commands_without_gpus_name_the_gpus_first(command, new_user, capsys):
    """The devices are what a user must fix first: the first line names them, before the
    missing dataset and before any download is tried."""
    home, cache, work = new_user
    line = refusal(shlex.split(command), capsys)
    assert line.startswith('error: --gpus ') and 'MXNet sees 0 GPU(s)' in line, line
    assert "--gpus ''" in line, line
    assert not cache.exists() and os.listdir(str(work)) == []  # nothing fetched or written


def voc_layout(root, synthetic_root):
    """The synthetic images as VOC2007 trainval/test and VOC2012 trainval, its shapes
    renamed to VOC classes."""
    names = {'circle': 'person', 'square': 'car', 'triangle': 'dog'}
    for year, splits in (('2007', {'trainval': 'train', 'test': 'val'}),
                         ('2012', {'trainval': 'train'})):
        folder = os.path.join(root, 'VOC' + year)
        shutil.copytree(synthetic_root, folder)
        for path in os.scandir(os.path.join(folder, 'Annotations')):
            xml = pathlib.Path(path.path)
            text = xml.read_text()
            for old, new in names.items():
                text = text.replace('<name>{}</name>'.format(old), '<name>{}</name>'.format(new))
            xml.write_text(text)
        main = os.path.join(folder, 'ImageSets', 'Main')
        for image_set, source in splits.items():
            shutil.copy(os.path.join(main, source + '.txt'), os.path.join(main, image_set + '.txt'))


@no_gpu
def test_gluoncv_command_refusals_come_devices_then_data_then_downloads(new_user, capsys,
                                                                         synthetic_root):
    """GluonCV's model-zoo command for yolo3_mobilenet1.0_voc, fixed one refusal at a time
    as a user would: devices, then the dataset, then the ImageNet backbone download."""
    home, cache, work = new_user
    argv = shlex.split(GLUONCV_COMMANDS[2])
    assert 'MXNet sees 0 GPU(s)' in refusal(argv, capsys)

    argv += ['--gpus', '']
    voc = os.path.join(str(home), '.mxnet', 'datasets', 'voc')
    assert refusal(argv, capsys) == (
        "error: dataset folder not found: expected a VOC-layout directory '{}' (with "
        "Annotations/, JPEGImages/, ImageSets/Main/)".format(os.path.join(voc, 'VOC2007')))
    assert not cache.exists() and os.listdir(str(work)) == []  # no download tried yet

    voc_layout(voc, synthetic_root)
    line = refusal(argv, capsys)
    assert line.startswith('error: the ImageNet weights of the mobilenet1.0 backbone are not '
                           'in {} and could not be downloaded'.format(cache / 'models')), line
    assert '--no-pretrained-base' in line and os.listdir(str(work)) == []
    assert (cache / 'models').is_dir()  # this time the download was tried


def test_amp_on_cpu_says_why_in_one_line(tmp_path, capsys, synthetic_root):
    code, out = run_cli(small_args(synthetic_root, tmp_path, '--amp'), capsys)
    assert code == 2 and 'FP16 gemm on cpu' in out.err and len(out.err.strip().splitlines()) == 1


# ----- end-to-end runs -----------------------------------------------------------------------
# The other flag of a field set by two (--gpus / --ctx, --fp16 / --amp, --self-check /
# --no-self-check), and --horovod, which refuses --syncbn and --self-check fallback.
OTHER_FLAGS = [
    (['--ctx', 'cpu:0,cpu:1'], 'contexts', ('cpu:0', 'cpu:1')),
    (['--amp'], 'precision', 'amp'),
    (['--no-self-check'], 'self_check', 'off'),
    (['--horovod'], 'horovod', True),
    (['--pretrained-base'], 'pretrained_base', True),
]
# The flags of the datasets described by files (any existing file passes the flag check).
_JSON = ['--dataset', 'coco-json', '--train-json', __file__, '--val-json', __file__,
         '--image-root', ROOT]
OTHER_FLAGS += [(_JSON, 'train_json', __file__), (_JSON, 'val_json', __file__),
                (_JSON, 'image_root', ROOT),
                (['--dataset', 'yolo', '--data', __file__], 'data_yaml', __file__)]


def test_every_flag_reaches_the_config(tmp_path, synthetic_root):
    """Every declared flag, given a value other than its default, changes the config; a
    flag declared without being given here fails the last assertion."""
    weights = tmp_path / 'w.params'
    weights.write_bytes(b'')
    argv = small_args(synthetic_root, tmp_path, '--epochs', '7', '--lr', '0.01', '--lr-mode',
                      'cosine', '--lr-decay', '0.5', '--lr-decay-period', '2',
                      '--lr-decay-epoch', '3,5', '--warmup-lr', '0.001', '--warmup-epochs',
                      '1', '--momentum', '0.8', '--wd', '0.001', '--save-interval', '3',
                      '--val-interval', '2', '--seed', '9', '--num-samples', '12', '--syncbn',
                      '--no-wd', '--mixup', '--no-mixup-epochs', '2', '--label-smooth',
                      '--fp16', '--fp32-warmup-epochs', '2', '--loss-scale', '64',
                      '--kvstore', 'local', '--classes', 'circle,square,triangle',
                      '--max-iters', '5', '--strict-data', '--nan-fallback-iters', '7',
                      '--max-recoveries', '2', '--resume', 'auto', '--start-epoch', '1',
                      '--no-pretrained-base', '--accumulate', '3', '--clip-grad', '5',
                      '--ema', '--ema-decay', '0.99', '--ema-ramp', '150', '--patience', '5',
                      '--freeze', '2',
                      '--tensorboard', '--auto-anchor', '--anchor-threshold', '3.5',
                      '--dataset', 'custom',
                      '--max-expand', '2', '--checkpoint-every', '4', '--cache', 'ram',
                      '--self-check', 'fallback', '--pretrained', str(weights))
    cfg = train_cli.make_config(train_cli.parse_args(argv))
    expected = dict(network='mobilenet0.25', data_shape=64, batch_size=4, num_workers=0,
                    contexts=('cpu:0',), epochs=7, lr=0.01, lr_mode='cosine', lr_decay=0.5,
                    lr_decay_period=2, lr_decay_epoch=(3, 5), warmup_lr=0.001,
                    warmup_epochs=1, momentum=0.8, wd=0.001, log_interval=1,
                    save_prefix=str(tmp_path) + os.sep,
                    save_interval=3, val_interval=2, seed=9, num_samples=12, syncbn=True,
                    no_random_shape=True, no_wd=True, mixup=True, no_mixup_epochs=2,
                    label_smooth=True, precision='fp16', fp32_warmup_epochs=2,
                    loss_scale='64', kvstore='local', classes=('circle', 'square', 'triangle'),
                    max_iters=5, strict_data=True, nan_fallback_iters=7, max_recoveries=2,
                    resume='auto', start_epoch=1, plots=False, dataset='custom',
                    dataset_root=synthetic_root, pretrained_base=False, accumulate=3,
                    clip_grad=5.0, ema=True, ema_decay=0.99, ema_ramp=150.0, patience=5, freeze=2,
                    tensorboard=True, auto_anchor=True, anchor_threshold=3.5,
                    max_expand=2.0,
                    checkpoint_every=4, cache='ram', self_check='fallback',
                    pretrained=str(weights))
    assert {k: getattr(cfg, k) for k in expected} == expected
    defaults = TrainConfig()
    for extra, field, value in OTHER_FLAGS:
        other_argv = small_args(synthetic_root, tmp_path, *extra)
        if '--dataset' in extra:  # described by files: --dataset-root would do nothing
            at = other_argv.index('--dataset-root')
            del other_argv[at:at + 2]
        other = train_cli.make_config(train_cli.parse_args(other_argv))
        assert getattr(other, field) == value != getattr(defaults, field), extra
    flagged = {field for field, _ in declared_flags(TrainConfig)}
    only_other = {'horovod', 'train_json', 'val_json', 'image_root', 'data_yaml'}  # above
    assert not {f for f in flagged - only_other if getattr(cfg, f) == getattr(defaults, f)}
    given = set(argv).union(*(extra for extra, _, _ in OTHER_FLAGS))
    assert [f.names for _, f in declared_flags(TrainConfig) if not given & set(f.names)] == []


def test_flag_defaults_are_the_config_defaults():
    assert train_cli.make_config(train_cli.parse_args([])) == TrainConfig()


def test_fp16_run_with_fp32_warmup_trains_validates_and_checkpoints(tmp_path, capsys,
                                                                     synthetic_root):
    argv = small_args(synthetic_root, tmp_path, '--epochs', '2', '--fp16',
                      '--fp32-warmup-epochs', '1', '--syncbn', '--loss-scale', '0.25',
                      '--label-smooth', '--no-wd', '--mixup', '--no-mixup-epochs', '1',
                      '--warmup-epochs', '1', '--warmup-lr', '0.0001', '--num-samples', '8')
    code, out = run_cli(argv, capsys)
    assert code == 0, out.err[-3000:]
    rows = read_rows(tmp_path)
    assert [r['phase'] for r in rows] == ['fp32', 'fp16']
    assert all(r['map'] not in ('', 'nan') for r in rows)
    assert 'no effect with one device' in out.out
    ckpt = read_checkpoint(str(tmp_path / 'yolo3_mobilenet0.25_synthetic_last.ckpt'))
    assert ckpt.meta['phase'] == 'fp16' and ckpt.meta['epoch'] == 1
    assert ckpt.meta['scaler']['mode'] == 'static' and ckpt.meta['optimizer']['layout']


def test_resume_auto_continues_and_matches_model(tmp_path, capsys, synthetic_root):
    base = small_args(synthetic_root, tmp_path, '--epochs', '1', '--max-iters', '3')
    assert run_cli(base, capsys)[0] == 0
    code, out = run_cli(small_args(synthetic_root, tmp_path, '--epochs', '2', '--resume',
                                   'auto', '--fp16', '--loss-scale', '0.25'), capsys)
    assert code == 0, out.err[-3000:]
    assert 'resumed' in out.out
    rows = read_rows(tmp_path)
    assert [(r['epoch'], r['phase']) for r in rows] == [('0', 'fp32'), ('1', 'fp16')]
    other = small_args(synthetic_root, tmp_path, '--epochs', '3', '--resume', 'auto',
                       '--classes', 'circle,square')
    code, out = run_cli(other, capsys)
    assert code == 2 and 'with 3 classes' in out.err


def test_amp_code_path_runs_on_cpu_with_a_cpu_executable_op_list(tmp_path, synthetic_root):
    """MXNet AMP cannot run FP16 convolutions on CPU; with an FP16 op list the CPU can
    execute, its whole code path (init, init_trainer, scale_loss, skip) still runs."""
    code = (
        "import sys; sys.path.insert(0, {root!r})\n"
        "from gluoncv_fp16.cli import train as train_cli\n"
        "from gluoncv_fp16.train.build import run_training\n"
        "args = train_cli.parse_args({argv!r})\n"
        "cfg = train_cli.make_config(args)\n"
        "cfg = cfg.replace(amp_fp16_ops=())\n"
        "loop = run_training(cfg)\n"
        "print('PHASE', loop.phase, 'SCALE', loop.scaler.scale_value)\n").format(
        root=ROOT, argv=small_args(synthetic_root, tmp_path, '--amp', '--epochs', '1',
                                   '--max-iters', '3'))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert 'PHASE amp SCALE' in out.stdout, out.stderr[-3000:]
    assert read_rows(tmp_path)[0]['phase'] == 'amp'


def test_resume_auto_falls_back_from_damage_and_knows_a_finished_run(tmp_path, capsys,
                                                                      synthetic_root):
    base = small_args(synthetic_root, tmp_path, '--epochs', '1', '--max-iters', '2')
    assert run_cli(base, capsys)[0] == 0
    code, out = run_cli(base + ['--resume', 'auto'], capsys)
    assert code == 0 and 'the run is complete' in out.out
    last = tmp_path / 'yolo3_mobilenet0.25_synthetic_last.ckpt'
    last.write_bytes(last.read_bytes()[:1000])
    more = small_args(synthetic_root, tmp_path, '--epochs', '2', '--max-iters', '3',
                      '--resume', 'auto')
    code, out = run_cli(more, capsys)
    assert code == 0, out.err[-2000:]
    assert 'skipping' in out.out and 'damaged or truncated' in out.out
    assert 'resumed {}'.format(tmp_path / 'yolo3_mobilenet0.25_synthetic_best.ckpt') in out.out
    last.unlink()
    (tmp_path / 'yolo3_mobilenet0.25_synthetic_best.ckpt').rename(tmp_path / 'keep.ckpt')
    code, out = run_cli(more, capsys)
    assert code == 0 and 'starting fresh' in out.out


def test_resume_from_gluoncv_params_uses_start_epoch(tmp_path, capsys, synthetic_root):
    first = tmp_path / 'first'
    assert run_cli(small_args(synthetic_root, first, '--epochs', '1', '--max-iters', '2'),
                   capsys)[0] == 0
    params = str(first / 'yolo3_mobilenet0.25_synthetic_best.params')
    second = tmp_path / 'second'
    code, out = run_cli(small_args(synthetic_root, second, '--epochs', '2', '--max-iters', '2',
                                   '--resume', params, '--start-epoch', '1'), capsys)
    assert code == 0, out.err[-3000:]
    assert 'loaded weights only' in out.out
    assert [r['epoch'] for r in read_rows(second)] == ['1']


def test_divergence_beyond_recovery_saves_last_good_state(tmp_path, synthetic_root):
    import numpy as np
    from gluoncv_fp16.train.build import build_training, train_or_save_last_good
    from gluoncv_fp16.train.nan_guard import TrainingDiverged
    from gluoncv_fp16.data.device_batch import unpack
    argv = small_args(synthetic_root, tmp_path, '--epochs', '1', '--max-recoveries', '1',
                      '--nan-fallback-iters', '1')
    cfg = train_cli.make_config(train_cli.parse_args(argv)).replace(snapshot_interval=1)
    loop, start = build_training(cfg)

    class Poisoned:
        """Good batches first, then NaN scale targets forever (a NaN *image* would not
        do: oneDNN's ReLU maps NaN to 0 on CPU, so it never reaches the loss)."""
        def __init__(self, loader):
            self.loader = loader

        def set_epoch(self, epoch):
            self.loader.set_epoch(epoch)

        def __iter__(self):
            for i, batch in enumerate(self.loader):
                if i >= 2:  # the loader's batches are packed: poison the dense targets
                    batch = unpack(batch)
                    batch = batch[:4] + (batch[4] * np.nan,) + batch[5:]
                yield batch
    loop.loader = Poisoned(loop.loader)
    with pytest.raises(TrainingDiverged, match='last good state .iteration 2. is in'):
        train_or_save_last_good(loop, cfg, start)
    ckpt = read_checkpoint(str(tmp_path / 'yolo3_mobilenet0.25_synthetic_diverged.ckpt'))
    assert ckpt.meta['guard']['recoveries'] == 1 and len(ckpt.meta['guard']['events']) == 2
    assert all(np.isfinite(v).all() for v in ckpt.params.values())
