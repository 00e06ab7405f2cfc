"""The training batch as loader workers send it, and its unpacking on the training devices.

A dense YOLOv3 batch is 3.23 MB per image at 416 px with VOC's 20 classes: the float32
image (2.08 MB) and five per-anchor target arrays (1.15 MB) that are zero (class -1)
everywhere but at the few anchors a box was assigned to. Every byte of it is received and
copied by the one process that feeds the devices. As YOLOv5 does for the image, workers
send instead a **packed** batch of three arrays (0.53 MB per image):

* ``image`` (B, 3, H, W) uint8: the augmented image before normalisation, rounded and
  clipped to [0, 255] (:meth:`.transforms.YOLO3FastTrainTransform.apply_packed`);
* ``gt_boxes`` (B, M, 4) float32, padded with -1, as in the dense batch;
* ``targets`` (B, 1 + K, 8) float32, ``K = ASSIGNED_ROWS``, per image (:func:`pack_targets`):
  row 0 ``[R, C, mean (3), std (3)]`` (the dense targets' row and class counts, the
  normalisation), then the assigned target rows of :func:`.targets.yolo3_assigned` with
  their row index stored as ``R - row`` and their class as ``class + 1``, then rows of 0.
  Stored that way, a row of zeros (padding, or nothing assigned) is what the device's
  scatter needs: padding lands on an extra row R, an unassigned row reads class 0.

Everything is per image and K is fixed, so a packed batch can be split or concatenated
along its first axis like any other. :func:`to_devices` splits it over the devices and
unpacks each part there with one cached graph: the image cast to float32 and normalised,
``(x / 255 - mean) / std``, and the assigned rows scattered into the dense targets the
YOLOv3 loss takes -- bit-identical to the transform's dense targets (tested). A dense
batch (7 arrays, e.g. GluonCV's) is only split.
"""
import functools
import weakref

import mxnet as mx
import numpy as np
from mxnet import gluon

from .targets import ASSIGNED_COLUMNS, CENTER, CLASS, OBJ, ROW, SCALE, WEIGHT

__all__ = ['ASSIGNED_ROWS', 'PackedBatch', 'PackedParts', 'PackedNet', 'pack_targets',
           'is_packed', 'batch_info', 'host_view', 'ndarray_view', 'from_host',
           'normalize_image', 'expand_targets', 'unpack', 'to_devices']

ASSIGNED_ROWS = 256  # per image; the loader's box limit for a ring slot, too


def pack_targets(assigned, num_rows, num_class, mean, std):
    """One image's ``targets`` rows (1 + len(assigned), 8) float32 (see the module doc).

    Parameters
    ----------
    assigned : numpy.ndarray, (N, 8) float32
        :func:`.targets.yolo3_assigned` rows.
    num_rows, num_class : int
        R and C of the dense targets; R must stay below 2**24 (exact in float32).
    mean, std : sequence of 3 floats
        The normalisation the device applies to the image.
    """
    out = np.empty((1 + len(assigned), ASSIGNED_COLUMNS), np.float32)
    out[0] = [num_rows, num_class] + list(mean) + list(std)
    out[1:] = assigned
    out[1:, ROW] = num_rows - assigned[:, ROW]  # exact: integers below 2**24
    out[1:, CLASS] += 1
    return out


def is_packed(batch):
    """Whether `batch` is a packed batch (3 arrays, uint8 image), not a dense one."""
    return len(batch) == 3 and np.dtype(batch[0].dtype) == np.uint8


class _DLPackView:
    """Lets ``np.from_dlpack`` read a CPU NDArray in place (read-only, no copy)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, stream=None):  # pylint: disable=unused-argument
        return self._array.to_dlpack_for_read()

    @staticmethod
    def __dlpack_device__():
        return (1, 0)  # kDLCPU


def host_view(array):
    """A NumPy array of `array`: CPU NDArrays are read in place, others copied."""
    if isinstance(array, mx.nd.NDArray):
        if array.context.device_type in ('cpu', 'cpu_pinned', 'cpu_shared'):
            return np.from_dlpack(_DLPackView(array))
        return array.asnumpy()
    return np.asarray(array)


def ndarray_view(array):
    """An NDArray on ``cpu(0)`` reading `array`'s memory in place (no copy).

    ``mx.nd.from_numpy(array, zero_copy=True)``: MXNet wraps the buffer through DLPack
    and holds a reference to `array` (and so to the memory it views) until the NDArray
    and every pending operation reading it are gone; its deleter takes the GIL, so the
    engine thread that may run it last is safe. `array` becomes read-only, as MXNet
    requires. ``mx.nd.from_dlpack(array.__dlpack__())`` is not used: NumPy before
    1.24 frees its DLPack tensors without taking the GIL (numpy issue 22507), and
    it refuses read-only arrays. Empty arrays are copied (DLPack gives them an unknown
    shape in MXNet).

    Raises
    ------
    ValueError
        If `array` is not C-contiguous, or its dtype has no MXNet DLPack type (int8,
        uint16, ...).
    """
    if not array.flags.c_contiguous:
        raise ValueError('ndarray_view needs a C-contiguous array')
    if array.size == 0:
        return mx.nd.array(array, dtype=array.dtype)
    try:
        return mx.nd.from_numpy(array, zero_copy=True)
    except ValueError as err:  # MXNet: "int8 is not supported."
        raise ValueError('ndarray_view cannot wrap {} arrays ({})'.format(
            array.dtype, err)) from None


class PackedBatch(tuple):
    """A packed batch's three NDArrays, with its :func:`batch_info` read on the host.

    Reading it back from the ``targets`` NDArray would cost the main process a DLPack
    view and a wait on the array every batch.
    """

    info = None


def from_host(arrays):
    """A batch of C-contiguous NumPy arrays as NDArrays on ``cpu(0)``, without copies.

    A packed batch comes back as a :class:`PackedBatch` carrying its info.
    """
    batch = tuple(ndarray_view(a) for a in arrays)
    if not is_packed(arrays):
        return batch
    packed = PackedBatch(batch)
    packed.info = batch_info(arrays[2])
    return packed


def batch_info(targets):
    """``(num_rows, num_class, mean, std)`` from a packed batch's ``targets`` (B, 1+K, 8).

    Raises
    ------
    ValueError
        If the images disagree (parts of batches made for different input sizes,
        networks or normalisations were put together).
    """
    targets = host_view(targets)
    if targets.ndim != 3 or targets.shape[2] != ASSIGNED_COLUMNS or not targets.size:
        raise ValueError('expected the targets of a packed batch, (B, 1 + K, {}), got shape '
                         '{}'.format(ASSIGNED_COLUMNS, targets.shape))
    info = targets[:, 0]
    if not (info == info[0]).all():
        raise ValueError('the images of a packed batch disagree on target rows, classes or '
                         'normalisation: {} distinct info rows'.format(
                             len(np.unique(info, axis=0))))
    row = info[0].tolist()
    return int(row[0]), int(row[1]), tuple(row[2:5]), tuple(row[5:8])


def normalize_image(image, mean, std):
    """uint8 (B, 3, H, W) -> float32 ``(image / 255 - mean) / std``, on image's device."""
    return _normalize(mx.nd, image, tuple(mean), tuple(std))


def expand_targets(targets, num_rows, num_class):
    """Dense YOLOv3 targets from a packed batch's ``targets``, on their device.

    Parameters
    ----------
    targets : mxnet.nd.NDArray, (B, 1 + K, 8) float32
    num_rows, num_class : int
        R and C of the dense targets.

    Returns
    -------
    tuple of mxnet.nd.NDArray, float32
        objectness (B, R, 1), centers (B, R, 2), scales (B, R, 2), weights (B, R, 2),
        class targets (B, R, C): 0 (class -1) where nothing is assigned, the row's values
        where something is -- exactly :func:`.targets.yolo3_targets`'s arrays stacked.
    """
    return _expand(mx.nd, targets, targets.shape[0], targets.shape[1] - 1, num_rows,
                   num_class)


def _normalize(F, image, mean, std):
    """Two operators: the cast, then one per-channel ``(x - 255 mean) / (255 std)``."""
    return F.image.normalize(F.cast(image, 'float32'), mean=tuple(255.0 * m for m in mean),
                             std=tuple(255.0 * s for s in std))


def _expand(F, targets, batch, rows, num_rows, num_class):
    """:func:`expand_targets` for NDArrays or symbols (static sizes)."""
    if batch * (num_rows + 1) >= 2 ** 24:
        raise ValueError('{} images of {} target rows cannot be indexed exactly in float32; '
                         'use fewer images per device'.format(batch, num_rows))
    assigned = F.slice_axis(targets, axis=1, begin=1, end=1 + rows)  # (B, K, 8)
    # Scatter into (B * (R + 1), 8): image b's row `row` is b * (R + 1) + row, and a
    # padding row (stored 0, i.e. row R) lands on the image's extra row R, cut off below
    # (scatter_nd leaves duplicate writes undefined; nothing reads them).
    last = F.arange(num_rows, batch * (num_rows + 1), num_rows + 1).reshape((batch, 1, 1))
    flat = F.broadcast_sub(last, F.slice_axis(assigned, axis=2, begin=ROW, end=ROW + 1))
    dense = F.scatter_nd(assigned.reshape((-1, ASSIGNED_COLUMNS)), flat.reshape((1, -1)),
                         shape=(batch * (num_rows + 1), ASSIGNED_COLUMNS))
    dense = F.slice_axis(dense.reshape((batch, num_rows + 1, ASSIGNED_COLUMNS)), axis=1,
                         begin=0, end=num_rows)
    _, obj, centers, scales, weight, clas = F.split_v2(
        dense, (OBJ, CENTER.start, SCALE.start, WEIGHT, CLASS), axis=2)
    # class + 1 is stored: one-hot over C + 1 has column 0 set exactly where nothing is
    # assigned, and the class's one-hot after it; their difference is -1 or the one-hot
    nothing, one_hot = F.split_v2(F.one_hot(clas.reshape((batch, num_rows)), num_class + 1),
                                  (1,), axis=2)
    return obj, centers, scales, F.concat(weight, weight, dim=2), \
        F.broadcast_sub(one_hot, nothing)


class _Unpack(gluon.HybridBlock):
    """One batch layout's unpacking as one cached graph: a single call enqueues its ~20
    operators (main-thread CPU ~0.7-1 ms per batch of 8 at 416 px here, ~4 ms op by op)."""

    def __init__(self, batch, rows, num_rows, num_class, mean, std):
        super().__init__()
        self._sizes = (batch, rows, num_rows, num_class)
        self._mean, self._std = mean, std

    def hybrid_forward(self, F, image, targets):  # pylint: disable=arguments-differ
        return (_normalize(F, image, self._mean, self._std),) + \
            _expand(F, targets, *self._sizes)


@functools.lru_cache(maxsize=64)
def _unpacker(batch, rows, num_rows, num_class, mean, std, static):
    """The cached block of one layout. `static`: keep its intermediates allocated.

    On a CPU that saves allocating and page-faulting them every batch (in an interleaved
    A/B here it took a third off the main process's cost per image); a GPU allocates
    from MXNet's pool anyway, and static memory would be kept for every input size (at
    608 px, batch 8: ~60 MB with 20 classes, ~105 MB with 80).
    """
    block = _Unpack(batch, rows, num_rows, num_class, mean, std)
    block.hybridize(static_alloc=static, static_shape=static)
    return block


def _unpack_part(image, gt_boxes, targets, info, static_alloc=None):
    """One device's part: (image, gt_boxes) + dense targets, through the cached graph
    (static memory on CPUs unless `static_alloc` says otherwise)."""
    num_rows, num_class, mean, std = info
    if static_alloc is None:
        static_alloc = targets.context.device_type != 'gpu'
    block = _unpacker(int(targets.shape[0]), int(targets.shape[1]) - 1, num_rows, num_class,
                      mean, std, bool(static_alloc))
    image, *dense = block(image, targets)
    return (image, gt_boxes) + tuple(dense)


class PackedNet(gluon.HybridBlock):
    """`net` called on one device's packed part: the unpacking and the net in one graph.

    The training step's own cached graph then does the unpacking, so the main thread
    makes one call per device batch instead of two (the unpacking's call alone was
    ~0.6 ms per batch of 8 at 416 px here) and the image arrives in the compute dtype
    without a cast of its own. The unpacking is the same :class:`_Unpack` block, so the
    losses are the separate unpacking's to the bit (tested). One block per batch layout
    and compute dtype, as :func:`_unpacker`.

    Parameters
    ----------
    net : gluon.HybridBlock
        Called as ``net(image, gt_boxes, obj, centers, scales, weights, clas)``;
        registered as a child, so hybridizing this block hybridizes `net` again.
    batch, rows : int
        Images in the part, and the assigned rows per image (``targets.shape[1] - 1``).
    info : tuple
        :func:`batch_info` of the packed batch.
    dtype : str
        The compute dtype the image is cast to (the targets stay float32).
    """

    def __init__(self, net, batch, rows, info, dtype='float32'):
        super().__init__()
        self.net = net
        self.unpack = _Unpack(batch, rows, *info)
        self._dtype = dtype

    def hybrid_forward(self, F, image, gt_boxes, targets):  # pylint: disable=arguments-differ
        x, *dense = self.unpack(image, targets)
        if self._dtype != 'float32':
            x = F.cast(x, self._dtype)
        return self.net(x, gt_boxes, *dense)


class PackedParts(list):
    """``[images, gt_boxes, targets]`` of a packed batch, each one NDArray per device,
    left packed for :class:`PackedNet` (``to_devices(..., expand=False)``); ``info``
    is the batch's :func:`batch_info`. The image and targets arrays are reused for a
    later batch once this object is gone: read them through it, not after it."""

    info = None

    def expand(self, static_alloc=None):
        """The 7 lists :func:`to_devices` gives with ``expand=True``."""
        dense = [_unpack_part(*part, self.info, static_alloc) for part in zip(*self)]
        return [list(arrays) for arrays in zip(*dense)]


def _info_of(batch):
    return batch.info if getattr(batch, 'info', None) is not None else batch_info(batch[2])


def unpack(batch):
    """A packed batch (any device) as the dense 7 arrays on that device.

    Returns ``(image float32 (B, 3, H, W), gt_boxes, objectness, centers, scales,
    weights, class targets)``; a dense batch is returned as it is.
    """
    if not is_packed(batch):
        return tuple(batch)
    return _unpack_part(*batch, _info_of(batch))


def _split(array, contexts, name=None, taken=None):
    """`array` split over `contexts` and copied there: ``split_and_load`` without its
    per-call overhead for one device (~20 us here). A part already on its device is
    used in place. With `name`, the copies go into free input buffers of that name
    (:func:`_take_input`), which are listed in `taken`.
    """
    parts = [array] if len(contexts) == 1 else \
        gluon.utils.split_data(array, len(contexts), even_split=False)
    out = []
    for part, ctx in zip(parts, contexts):
        if part.context == ctx:
            out.append(part)
        elif name is None:
            out.append(part.copyto(ctx))
        else:
            buffer = _take_input(ctx, name, part.shape, part.dtype)
            taken.append((ctx, name, buffer))
            out.append(part.copyto(buffer))
    return out


# Device arrays the copies of a packed part's image and targets go into: only the
# unpacking (or PackedNet's graph) reads them, never the caller. A copy into an existing
# array costs the main thread about half a copy into a new one (no allocation, no new
# NDArray). A buffer is free again only when the PackedParts holding it is gone: by then
# the step (or the unpacking) reading it has been enqueued, and MXNet's engine orders
# the next copy into it after that read. One buffer per device would be wrong: with gradient
# accumulation every batch of a window is copied before the first one's step runs.
# Only the latest shape per device and array is kept, so that random input sizes do not
# pile up device memory.
_FREE_INPUTS = {}  # (context, name) -> (shape, dtype, [free arrays])


def _take_input(ctx, name, shape, dtype):
    shape, dtype = tuple(shape), np.dtype(dtype)
    kept = _FREE_INPUTS.get((ctx, name))
    if kept is None or kept[:2] != (shape, dtype):
        kept = _FREE_INPUTS[(ctx, name)] = (shape, dtype, [])
    return kept[2].pop() if kept[2] else mx.nd.empty(shape, ctx, dtype)


def _give_back(taken):
    for ctx, name, buffer in taken:
        kept = _FREE_INPUTS.get((ctx, name))
        if kept is not None and kept[:2] == (buffer.shape, np.dtype(buffer.dtype)):
            kept[2].append(buffer)


def to_devices(batch, contexts, static_alloc=None, expand=True):
    """Split a host batch over `contexts` and unpack each part on its device.

    Parameters
    ----------
    batch : sequence of NDArray
        A packed or a dense batch.
    contexts : list of mxnet.Context
    static_alloc : bool or None
        Whether the unpacking graph keeps its memory (see :func:`_unpacker`); None: on
        CPUs only. scripts/benchmark_data.py forces False to count, on a CPU, the host
        cost of the graph a GPU runs.
    expand : bool
        False: a packed batch is only copied, as :class:`PackedParts`, for a
        :class:`PackedNet` to unpack inside the training step's graph.

    Returns
    -------
    list of 7 lists
        ``[images, gt_boxes, obj, centers, scales, weights, clas]``, each holding one
        NDArray per context (what ``split_and_load`` of a dense batch gives); or the
        :class:`PackedParts` of a packed batch when `expand` is False.
    """
    if not is_packed(batch):
        return [_split(a, contexts) for a in batch]
    taken = []
    # gt_boxes reach the caller as they are (expand), so they get new arrays
    parts = PackedParts(_split(array, contexts, name, taken)
                        for array, name in zip(batch, ('image', None, 'targets')))
    parts.info = _info_of(batch)  # read on the host, before any copy
    if taken:  # the buffers are free again once nothing can read them through `parts`
        weakref.finalize(parts, _give_back, taken).atexit = False
    return parts.expand(static_alloc) if expand else parts
