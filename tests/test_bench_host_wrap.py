"""gluoncv_fp16.bench.host_wrap: the former ctypes route is read from the git history and
wraps in place like the current one; the measurement gives one value per round and route."""
import numpy as np

from gluoncv_fp16.bench import host_wrap
from gluoncv_fp16.data.device_batch import host_view, ndarray_view


def _address(array):
    return array.__array_interface__['data'][0]


def test_the_former_route_comes_from_the_history_and_is_zero_copy_like_the_current():
    former = host_wrap.former_route()
    if isinstance(former, str):  # a checkout without the history (shallow clone)
        assert host_wrap.FORMER_COMMIT in former and '\n' not in former
        return
    assert former.__module__.endswith(host_wrap.FORMER_COMMIT)
    for wrap in (former, ndarray_view):
        source = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        wrapped = wrap(source)
        assert _address(host_view(wrapped)) == _address(source)
        np.testing.assert_array_equal(wrapped.asnumpy(), source)


def test_measure_interleaves_rounds_and_report_gives_the_ratio():
    arrays = host_wrap.packed_batch(batch_size=2, size=32, boxes=3)
    assert [a.shape for a in arrays] == [(2, 3, 32, 32), (2, 3, 4), (2, 257, 8)]
    routes = {'a': ndarray_view, 'b': lambda a: ndarray_view(np.ascontiguousarray(a))}
    times = host_wrap.measure(routes, rounds=3, batches=2, arrays=arrays)
    assert sorted(times) == ['a', 'b'] and all(len(v) == 3 for v in times.values())
    assert all(t > 0 for v in times.values() for t in v)
    lines = host_wrap.report(times, 3, 'a', 'b')
    assert len(lines) == 4 and lines[-1].startswith('  current / former:')
