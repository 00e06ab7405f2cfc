"""distributed.distributed: rank helpers, the launcher check, fail_fast, the Horovod message."""
import subprocess
import sys

import mxnet as mx
import pytest

from helpers import child_env
from gluoncv_fp16.distributed import distributed
from gluoncv_fp16.distributed.distributed import (HorovodUnavailable, fail_fast, init_horovod,
                                             is_distributed, require_launcher,
                                             worker_info)



def test_single_process_is_rank_0_of_1_and_chief():
    assert worker_info() == (0, 1) and worker_info('device') == (0, 1)
    kv = mx.kv.create('local')
    assert worker_info(kv) == (0, 1)


def test_rank_of_a_dist_kvstore_name_needs_the_created_store():
    with pytest.raises(ValueError, match=r"after mx.kv.create\('dist_sync'\)"):
        worker_info('dist_sync')


def test_is_distributed():
    assert is_distributed('dist_sync') and is_distributed('dist_device_sync')
    assert not is_distributed('device') and not is_distributed(None)
    assert not is_distributed(mx.kv.create('local'))


def test_require_launcher_names_the_missing_variables(monkeypatch):
    for name in ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_SERVER',
                 'DMLC_NUM_WORKER'):
        monkeypatch.delenv(name, raising=False)
    require_launcher('device')  # not distributed: nothing needed
    with pytest.raises(RuntimeError, match='DMLC_ROLE, .*DMLC_NUM_WORKER not set.*launch.py'):
        require_launcher('dist_sync')
    for name, value in (('DMLC_ROLE', 'worker'), ('DMLC_PS_ROOT_URI', '127.0.0.1'),
                        ('DMLC_PS_ROOT_PORT', '9000'), ('DMLC_NUM_SERVER', '1'),
                        ('DMLC_NUM_WORKER', '2')):
        monkeypatch.setenv(name, value)
    require_launcher('dist_sync')


def test_horovod_missing_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, 'horovod.mxnet', None)  # import fails even if installed
    with pytest.raises(HorovodUnavailable, match=r'Horovod is not installed: build it .*'
                       r'with bash scripts/install_horovod.sh'):
        init_horovod()
    assert issubclass(HorovodUnavailable, ImportError)


def test_horovod_trainer_broadcasts_then_wraps(monkeypatch):
    """With a stand-in module: weights are broadcast from rank 0 before the trainer exists."""
    calls = []

    class FakeHvd:
        @staticmethod
        def broadcast_parameters(params, root_rank):
            calls.append(('broadcast', root_rank))

        @staticmethod
        def DistributedTrainer(params, optimizer, optimizer_params):  # noqa: N802
            calls.append(('trainer', optimizer, optimizer_params))
            return 'trainer'

    assert distributed.horovod_trainer({}, 'sgd', {'learning_rate': 0.1}, hvd=FakeHvd) == \
        'trainer'
    assert calls == [('broadcast', 0), ('trainer', 'sgd', {'learning_rate': 0.1})]


CHILD = '''
import atexit, logging, sys
from gluoncv_fp16.distributed.distributed import fail_fast
logging.basicConfig(level=logging.INFO)
atexit.register(lambda: print('atexit ran', flush=True))
with fail_fast():
    {body}
'''


@pytest.mark.parametrize('body, code, logged', [
    ("raise ValueError('bad batch')", 1, 'ValueError: bad batch'),
    ('sys.exit(3)', 3, 'exiting with 3'),
    ("print('fine')", 0, None),
])
def test_fail_fast_exits_at_once_without_shutdown_handlers(body, code, logged):
    env = child_env()
    proc = subprocess.run([sys.executable, '-c', CHILD.format(body=body)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    # atexit (where ps-lite's shutdown barrier would run) is skipped only on failure.
    assert ('atexit ran' in proc.stdout) == (code == 0)
    if logged:
        assert logged in proc.stderr and 'without the ps-lite shutdown barrier' in proc.stderr
        assert 'worker failed' in proc.stderr or code != 1


def test_fail_fast_reports_a_user_error_in_one_line_with_exit_2():
    """A setting the user must fix (e.g. a dataset folder found missing after the dist
    kvstore exists) ends a worker as it ends a single-process run: one line, exit 2."""
    env = child_env()
    child = CHILD.replace('fail_fast()', 'fail_fast(user_errors=(KeyError, ValueError))')
    proc = subprocess.run([sys.executable, '-c', child.format(
        body="raise ValueError('dataset folder not found')")], env=env, capture_output=True,
        text=True, timeout=60)
    assert proc.returncode == 2 and 'atexit ran' not in proc.stdout, proc.stderr
    assert proc.stderr.strip() == 'error: dataset folder not found'


def test_fail_fast_lets_a_clean_exit_through():
    with pytest.raises(SystemExit) as info, fail_fast():
        sys.exit(0)
    assert info.value.code == 0
