"""Training/validation loaders: reproducible batches, sharding, rollover, mixup."""
import os

import mxnet as mx
import numpy as np
import pytest

from gluoncv_fp16.data.datasets import build_datasets
from gluoncv_fp16.data.device_batch import ASSIGNED_ROWS, unpack
from gluoncv_fp16.data.loader import make_train_loader, make_val_loader, mixup_sample
from gluoncv_fp16.data.sampling import EpochPlan
from gluoncv_fp16.data.transforms import YOLO3FastValTransform


@pytest.fixture(scope='module')
def datasets(synthetic_root):
    train, val, _ = build_datasets('custom', root=synthetic_root)
    return train, val


def as_numpy(batches):
    return [[a.asnumpy() for a in batch] for batch in batches]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


def test_batches_identical_for_any_worker_count_and_on_resume(net, datasets):
    kwargs = dict(random_shape=True, shape_interval=2, shapes=[64, 96], mixup=True, seed=5)
    in_process = make_train_loader(datasets[0], net, 4, 64, num_workers=0, **kwargs)
    for epoch in range(2):  # an uninterrupted run: epochs 0, 1, then 2
        in_process.set_epoch(epoch)
        list(in_process)
    in_process.set_epoch(2)
    reference = as_numpy(in_process)
    resumed = make_train_loader(datasets[0], net, 4, 64, num_workers=2, **kwargs)
    try:
        resumed.set_epoch(2)  # a fresh process resuming at epoch 2
        batches = list(resumed)
        assert all(a.context == mx.cpu(0) for batch in batches for a in batch)
        assert_same_batches(reference, as_numpy(batches))
    finally:
        resumed.close()
    assert {b[0].shape[-1] for b in reference} == {64, 96}  # random shapes were used
    shapes = [b[0].shape[-1] for b in reference]
    assert all(shapes[i] == shapes[i + 1] for i in range(0, len(shapes) - 1, 2))


def test_batch_layout(net, datasets):
    loader = make_train_loader(datasets[0], net, 3, 64)
    packed = next(iter(loader))
    assert [a.dtype for a in packed] == [np.uint8, np.float32, np.float32]
    assert packed[2].shape == (3, 1 + ASSIGNED_ROWS, 8)
    image, gt, obj, centers, scales, weights, clas = unpack(packed)
    assert image.shape == (3, 3, 64, 64) and gt.shape[0] == 3 and gt.shape[2] == 4
    rows = obj.shape[1]
    assert centers.shape == scales.shape == weights.shape == (3, rows, 2)
    assert clas.shape == (3, rows, len(net.classes))
    assert (obj.asnumpy() > 0).sum() >= 3  # every image keeps at least one box
    padded = gt.asnumpy()
    assert ((padded == -1).all(axis=2) | (padded >= 0).all(axis=2)).all()


def test_epochs_differ_and_each_covers_the_dataset(datasets):
    plan = EpochPlan(len(datasets[0]), 5, seed=1, last_batch='discard')
    first = [i for batch in plan.batches(0) for i, _ in batch]
    second = [i for batch in plan.batches(1) for i, _ in batch]
    assert first != second
    assert len(set(first)) == len(first) == (len(datasets[0]) // 5) * 5


def test_rollover_carries_leftovers_into_the_next_epoch():
    plan = EpochPlan(10, 4, seed=0, last_batch='rollover')
    seen = []
    for epoch in range(4):
        batches = plan.batches(epoch)
        assert all(len(b) == 4 for b in batches)
        seen += [(i, e) for b in batches for i, e in b]
    assert len(seen) == len(set(seen))  # nothing twice
    assert len(seen) == 40  # 4 epochs x 10 samples, nothing lost
    assert [len(plan.batches(e)) for e in range(4)] == [2, 3, 2, 3]


def test_keep_yields_a_smaller_last_batch():
    batches = EpochPlan(10, 4, shuffle=False, last_batch='keep').batches(0)
    assert [len(b) for b in batches] == [4, 4, 2]


def test_shards_are_disjoint_and_equal():
    plans = [EpochPlan(23, 2, seed=3, num_parts=3, part_index=k) for k in range(3)]
    shards = [set(p.shard(4).tolist()) for p in plans]
    assert [len(s) for s in shards] == [7, 7, 7]
    assert not (shards[0] & shards[1] or shards[0] & shards[2] or shards[1] & shards[2])
    with pytest.raises(ValueError, match='part_index'):
        EpochPlan(23, 2, num_parts=3, part_index=3)


def test_mixup_blends_and_can_be_turned_off(net, datasets):
    rng = np.random.default_rng(0)
    weights = [mixup_sample(datasets[0], 0, rng, True)[1][:, -1] for _ in range(20)]
    assert any((w < 1).any() for w in weights)
    assert all(np.allclose(mixup_sample(datasets[0], 0, rng, False)[1][:, -1], 1)
               for _ in range(5))
    loader = make_train_loader(datasets[0], net, 4, 64, mixup=True)
    objectness = unpack(next(iter(loader)))[2].asnumpy()
    assert ((objectness > 0) & (objectness < 1)).any()
    loader.set_mixup(False)
    objectness = unpack(next(iter(loader)))[2].asnumpy()
    assert set(np.unique(objectness)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match='mixup=True'):
        make_train_loader(datasets[0], net, 4, 64).set_mixup(True)


def test_augment_false_is_the_validation_image(net, datasets):
    loader = make_train_loader(datasets[0], net, 2, 96, augment=False, shuffle=False)
    image = unpack(next(iter(loader)))[0].asnumpy()
    expected = YOLO3FastValTransform(96, 96).apply(*datasets[0][0])[0]
    np.testing.assert_allclose(image[0], expected, rtol=0, atol=2e-6)  # uint8 exact


def test_val_loader_keeps_order_and_pads(datasets):
    val = datasets[1]
    loader = make_val_loader(val, 3, 64, num_workers=1)
    try:
        batches = list(loader)
    finally:
        loader.close()
    assert len(batches) == len(loader) == -(-len(val) // 3)
    labels = batches[0][1].asnumpy()
    assert sum(b[0].shape[0] for b in batches) == len(val)
    first = YOLO3FastValTransform(64, 64).apply(*val[0])[1]
    np.testing.assert_allclose(labels[0, :len(first)], first)
    assert (labels[0, len(first):] == -1).all()


def consume(loader, epoch=0):
    """Batches as NumPy copies, each NDArray dropped before the next (as a trainer does)."""
    loader.set_epoch(epoch)
    return [[a.asnumpy() for a in batch] for batch in loader]


def shm_folders():
    return {n for n in os.listdir('/dev/shm') if n.startswith('gluoncv_fp16_batches_')} \
        if os.path.isdir('/dev/shm') else set()


def test_ring_slots_give_the_same_batches_and_come_back(net, datasets):
    kwargs = dict(random_shape=True, shape_interval=1, shapes=[64, 96], mixup=True, seed=2)
    reference = consume(make_train_loader(datasets[0], net, 2, 64, **kwargs), epoch=1)
    before = shm_folders()
    loader = make_train_loader(datasets[0], net, 2, 64, num_workers=2, **kwargs)
    try:
        assert_same_batches(reference, consume(loader, epoch=1))
        ring = loader._ring  # pylint: disable=protected-access
        assert len(reference) > len(ring)  # 12 batches, 7 slots
        assert loader.transport['slot'] == len(reference) and not loader.transport['file']
        assert ring.free_slots == len(ring)  # every slot released once its arrays died
        # held batches stay intact while later ones are written (the ring runs dry and
        # the rest go through files), and slots come back when the batches are dropped
        loader.set_epoch(1)
        held = list(loader)
        assert_same_batches(reference, as_numpy(held))
        assert loader.transport['file'] > 0 and ring.free_slots < len(ring)
        del held
        assert ring.free_slots == len(ring)
    finally:
        loader.close()
    assert shm_folders() == before  # nothing left in /dev/shm


def test_epoch_left_early_frees_its_slots_and_files(net, datasets):
    loader = make_train_loader(datasets[0], net, 2, 64, num_workers=2, seed=1)
    try:
        loader.set_epoch(0)
        batches = iter(loader)
        first = next(batches)[0].asnumpy()
        batches.close()  # a trainer stopping mid-epoch (max_iters)
        ring = loader._ring  # pylint: disable=protected-access
        assert ring.free_slots == len(ring)
        assert not os.listdir(loader._spool)  # pylint: disable=protected-access
        np.testing.assert_array_equal(first, consume(loader)[0][0])
    finally:
        loader.close()


def test_batch_larger_than_a_slot_takes_a_file(net, datasets, monkeypatch):
    import gluoncv_fp16.data.loader as loader_module
    reference = consume(make_train_loader(datasets[0], net, 4, 64, seed=4))
    monkeypatch.setattr(loader_module, '_GT_ROWS', 0)  # slots without room for any box
    loader = make_train_loader(datasets[0], net, 4, 64, num_workers=1, seed=4)
    try:
        assert_same_batches(reference, consume(loader))
        assert loader.transport['file'] == len(reference) and not loader.transport['slot']
    finally:
        loader.close()


class _Exploding:
    """A dataset whose sample 3 raises, as a strict dataset does on a bad file."""

    def __init__(self, base):
        self.base, self.bad_samples = base, base.bad_samples

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        if index == 3:
            raise ValueError('sample 3 is broken')
        return self.base[index]


def test_worker_errors_reach_the_caller_and_a_killed_worker_is_named(net, datasets):
    import signal
    from gluoncv_fp16.data.worker_pool import WorkerDied
    loader = make_train_loader(_Exploding(datasets[0]), net, 4, 64, num_workers=2,
                               shuffle=False)
    try:
        with pytest.raises(ValueError, match='sample 3 is broken'):
            list(loader)
        assert loader._ring.free_slots == len(loader._ring)  # pylint: disable=protected-access
        batches = iter(loader)  # the workers keep serving after a failed task
        with pytest.raises(ValueError, match='sample 3 is broken'):
            next(batches)
    finally:
        loader.close()
    loader = make_train_loader(datasets[0], net, 2, 64, num_workers=1)
    try:
        batches = iter(loader)
        next(batches)
        os.kill(loader._pool._procs[0].pid, signal.SIGKILL)  # pylint: disable=protected-access
        with pytest.raises(WorkerDied, match='worker 0 ended'):
            for _ in range(4):
                next(batches)
        assert loader._pool is None  # pylint: disable=protected-access
    finally:
        loader.close()


def test_a_loader_dropped_without_close_leaves_nothing_behind(net, datasets):
    import gc
    before = shm_folders()
    makers = [lambda: make_train_loader(datasets[0], net, 2, 64, num_workers=1),
              lambda: make_val_loader(datasets[1], 2, 64, num_workers=1)]
    for make in makers:
        loader = make()
        next(iter(loader))
        assert shm_folders() != before  # its private folder for file batches
        procs = list(loader._pool._procs)  # pylint: disable=protected-access
        del loader
        gc.collect()
        assert shm_folders() == before
        assert not any(p.is_alive() for p in procs)


def test_without_ring_memory_batches_take_files(net, datasets, monkeypatch, caplog):
    import gluoncv_fp16.data.loader as loader_module

    def no_memory(*args):
        raise OSError(12, 'Cannot allocate memory')
    reference = consume(make_train_loader(datasets[0], net, 4, 64, seed=6))
    monkeypatch.setattr(loader_module, 'BatchRing', no_memory)
    loader = make_train_loader(datasets[0], net, 4, 64, num_workers=1, seed=6)
    try:
        assert_same_batches(reference, consume(loader))
        assert loader.transport['file'] == len(reference)
    finally:
        loader.close()
    assert 'no shared batch ring' in caplog.text
