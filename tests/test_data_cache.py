"""--cache ram|disk: same batches, shared by workers and ranks, second epoch decodes nothing."""
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from gluoncv_fp16.data import image_cache
from gluoncv_fp16.data.datasets import build_datasets
from gluoncv_fp16.data.image_cache import CacheError, enable_cache
from gluoncv_fp16.data.loader import make_train_loader, make_val_loader


@pytest.fixture
def root(synthetic_copy):
    """A private copy: disk caches are written next to the dataset."""
    return synthetic_copy


def epoch_batches(loader, epoch):
    loader.set_epoch(epoch)
    return [[a.asnumpy() for a in batch] for batch in loader]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


KW = dict(random_shape=True, shape_interval=1, shapes=[64, 96], mixup=True, seed=7)


@pytest.mark.parametrize('mode', ['ram', 'disk'])
def test_cached_batches_equal_and_the_second_epoch_decodes_nothing(net, root, mode):
    plain, _, _ = build_datasets('custom', root=root)
    reference = [epoch_batches(make_train_loader(plain, net, 4, 64, **KW), e) for e in (0, 1)]
    train, val, _ = build_datasets('custom', root=root)
    train_cache, val_cache = enable_cache({'train': train, 'val': val}, mode)
    loader = make_train_loader(train, net, 4, 64, num_workers=2, **KW)
    try:
        assert_same(reference[0], epoch_batches(loader, 0))
        assert train_cache.cached == len(train)
        # two workers may decode one image at the same moment (mixup draws any other);
        # it is stored once
        decodes = train_cache.decodes
        assert len(train) <= decodes <= len(train) + 4
        assert_same(reference[1], epoch_batches(loader, 1))
        assert train_cache.decodes == decodes  # the second epoch decoded nothing
    finally:
        loader.close()
    val_loader = make_val_loader(val, 3, 64, num_workers=1)
    try:
        first, second = list(val_loader), list(val_loader)
        assert val_cache.decodes == len(val)
        assert_same([[a.asnumpy() for a in b] for b in first],
                    [[a.asnumpy() for a in b] for b in second])
    finally:
        val_loader.close()
    files = os.listdir(os.path.join(root, '.gluoncv_fp16_cache')) \
        if os.path.isdir(os.path.join(root, '.gluoncv_fp16_cache')) else []
    assert len(files) == (2 if mode == 'disk' else 0)  # ram leaves no file anywhere


def test_disk_cache_is_reused_by_the_next_run_and_shared_by_ranks(net, root):
    plain, _, _ = build_datasets('custom', root=root)
    parts = [dict(num_parts=2, part_index=k, seed=3) for k in (0, 1)]
    reference = [epoch_batches(make_train_loader(plain, net, 2, 64, **p), 0) for p in parts]
    ranks = [build_datasets('custom', root=root)[0] for _ in parts]  # two processes' sets
    caches = [enable_cache({'train': d}, 'disk')[0] for d in ranks]
    loaders = [make_train_loader(d, net, 2, 64, num_workers=1, **p)
               for d, p in zip(ranks, parts)]
    try:  # both ranks' workers fill the one file at the same time
        for loader in loaders:
            loader.set_epoch(0)
        got = [[], []]
        for pair in zip(*loaders):
            for k, batch in enumerate(pair):
                got[k].append([a.asnumpy() for a in batch])
        for ref, batches in zip(reference, got):
            assert_same(ref, batches)
    finally:
        for loader in loaders:
            loader.close()
    assert caches[0].decodes == caches[1].decodes == caches[0].cached == len(plain)
    later, _, _ = build_datasets('custom', root=root)  # a later run
    cache = enable_cache({'train': later}, 'disk')[0]
    assert cache.cached == len(later)
    later[0]
    later[5]
    assert cache.decodes == len(later)


def test_bad_images_are_repaired_once_and_skipped_without_rereading(root):
    ids = Path(root, 'ImageSets', 'Main', 'train.txt').read_text().split()
    path = os.path.join(root, 'JPEGImages', '{}.jpg')
    data = Path(path.format(ids[0])).read_bytes()
    Path(path.format(ids[0])).write_bytes(data[:len(data) // 2])  # truncated
    gray = cv2.imread(path.format(ids[1]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(path.format(ids[1]), gray)                          # grayscale
    plain, _, _ = build_datasets('custom', root=root)
    train, _, _ = build_datasets('custom', root=root)
    cache = enable_cache({'train': train}, 'ram')[0]
    for epoch in range(2):
        for i in range(len(train)):
            img, label = train[i]
            ref_img, ref_label = plain[i]
            np.testing.assert_array_equal(img, ref_img)
            np.testing.assert_array_equal(label, ref_label)
        if epoch == 0:
            decodes = cache.decodes
    assert cache.decodes == decodes == len(train) - 1  # the truncated one is never stored
    assert cache.is_bad(0) and not cache.is_bad(1)
    assert train.bad_samples.counts() == {'truncated image': 1}
    assert train.bad_samples.conversions() == {'grayscale converted': 1}
    with pytest.raises(ValueError):  # cached images are read-only views
        train[1][0][0, 0, 0] = 1


def test_ram_cache_is_refused_when_it_would_not_fit(root, monkeypatch, caplog):
    train, val, _ = build_datasets('custom', root=root)
    need = sum(w * h * 3 for w, h in train.image_sizes() + val.image_sizes())
    monkeypatch.setattr(image_cache, '_available_memory', lambda: need // 2)
    caplog.set_level('INFO', logger=image_cache.__name__)
    with pytest.raises(CacheError, match=r'--cache ram needs about .* GB for 32 decoded '
                                         r'images .* use --cache disk'):
        enable_cache({'train': train, 'val': val}, 'ram')
    assert 'about 0.00 GB decoded' in caplog.text  # the estimate comes first
    assert train.image_cache is None
    with pytest.raises(TypeError, match='fork'):
        pickle.dumps(enable_cache({'train': train}, 'disk')[0])


def test_cli_cache_flag_reaches_the_loaders_or_is_refused(tmp_path, capsys, root,
                                                           monkeypatch):
    from gluoncv_fp16.cli import train as train_cli
    from gluoncv_fp16.train.build import build_training
    argv = ['--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '4',
            '--dataset', 'custom', '--dataset-root', root, '-j', '0', '--gpus', '',
            '--save-prefix', str(tmp_path) + os.sep, '--no-random-shape', '--no-plots',
            '--max-iters', '1', '--epochs', '1', '--cache', 'ram', '--no-pretrained-base']
    cfg = train_cli.make_config(train_cli.parse_args(argv))
    assert cfg.cache == 'ram'
    loop, _ = build_training(cfg)
    assert loop.loader.dataset.image_cache is not None
    loop.loader.close()
    monkeypatch.setattr(image_cache, '_available_memory', lambda: 1000)
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert '--cache ram needs about' in err and len(err.strip().splitlines()) == 1
