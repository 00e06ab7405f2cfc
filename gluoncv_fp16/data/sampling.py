"""Which samples, in which batches, at which input size: a pure function of the seed.

Resuming a run must reproduce the batches an uninterrupted run would have seen, with
any number of workers. So nothing here keeps state between epochs: the order of epoch
`e` comes from a generator seeded with ``(seed, e)``, a distributed part takes a fixed
slice of it, ``rollover`` leftovers are recomputed from the previous epoch's order, and
each sample's augmentation generator is seeded with ``(seed, epoch, index)``.
"""
import numpy as np

__all__ = ['EpochPlan', 'sample_rng']

_ORDER, _SHAPE, _SAMPLE = 0, 1, 2  # stream tags, so the three never share random numbers
LAST_BATCH = ('rollover', 'discard', 'keep')


def sample_rng(seed, epoch, index):
    """The generator of all random choices (augmentation, mixup) for one sample."""
    return np.random.default_rng([int(seed), _SAMPLE, int(epoch), int(index)])


class EpochPlan:
    """Batches of (sample index, epoch it was drawn in) and input sizes for every epoch.

    Parameters
    ----------
    num_samples, batch_size : int
    shuffle : bool
    seed : int
    num_parts, part_index : int
        Distributed sharding: each part gets ``num_samples // num_parts`` samples of the
        epoch's order, disjoint from the others' (the remainder varies by epoch).
    last_batch : {'rollover', 'discard', 'keep'}
        What happens to samples that do not fill a last batch: carried into the next
        epoch (GluonCV's YOLOv3 default), dropped, or yielded as a smaller batch.
    """

    def __init__(self, num_samples, batch_size, shuffle=True, seed=0, num_parts=1,
                 part_index=0, last_batch='rollover'):
        if last_batch not in LAST_BATCH:
            raise ValueError("last_batch must be one of {}, got '{}'".format(LAST_BATCH,
                                                                             last_batch))
        if not 0 <= part_index < num_parts:
            raise ValueError('part_index must be in [0, num_parts={}), got {}'.format(
                num_parts, part_index))
        if batch_size < 1:
            raise ValueError('batch_size must be >= 1, got {}'.format(batch_size))
        self.per_part = num_samples // num_parts
        if self.per_part == 0:
            raise ValueError('{} samples cannot be split into {} non-empty parts'.format(
                num_samples, num_parts))
        self.num_samples, self.batch_size = num_samples, batch_size
        self.shuffle, self.seed = shuffle, int(seed)
        self.num_parts, self.part_index = num_parts, part_index
        self.last_batch = last_batch

    def shard(self, epoch):
        """This part's samples of `epoch`, in order."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, _ORDER, int(epoch)]).permutation(
                self.num_samples)
        else:
            order = np.arange(self.num_samples)
        start = self.part_index * self.per_part
        return order[start:start + self.per_part]

    def _carry(self, epoch):
        """Samples carried out of `epoch` by rollover (0 before the first epoch)."""
        return ((epoch + 1) * self.per_part) % self.batch_size if epoch >= 0 else 0

    def _sequence(self, epoch):
        """(index, drawn-in epoch) pairs to batch in `epoch`, carried ones first."""
        own = [(int(i), epoch) for i in self.shard(epoch)]
        if self.last_batch != 'rollover' or epoch == 0:
            return own
        carry = self._carry(epoch - 1)
        return (self._sequence(epoch - 1)[-carry:] if carry else []) + own

    def batches(self, epoch):
        """List of batches, each a list of (sample index, drawn-in epoch)."""
        seq = self._sequence(int(epoch))
        size = self.batch_size
        count = len(seq) // size if self.last_batch != 'keep' else -(-len(seq) // size)
        return [seq[k * size:(k + 1) * size] for k in range(count)]

    def num_batches(self, epoch):
        return len(self.batches(epoch))

    def shapes(self, epoch, count, shapes, interval):
        """Input size of each of `count` batches: a new random one every `interval`."""
        rng = np.random.default_rng([self.seed, _SHAPE, int(epoch)])
        picks = rng.integers(0, len(shapes), size=-(-count // interval))
        return [int(shapes[picks[k // interval]]) for k in range(count)]
