"""scripts/benchmark_data.py runs end to end and prints every table (tiny settings).

It runs as a subprocess: the script sets OMP_NUM_THREADS when imported, which must not
leak into the other tests' environment.
"""
import os
import subprocess
import sys

from helpers import ROOT, child_env


def test_benchmark_data_prints_stages_main_process_cache_and_sizing():
    env = child_env()
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'scripts', 'benchmark_data.py'), '--network',
         'yolo3_mobilenet0.25_voc', '--size', '64', '--image-size', '96x72', '--batch-size',
         '2', '--rounds', '1', '--stage-images', '2', '--main-batches', '1', '--workers', '1',
         '--target-ips', '500', '--wrap-rounds', '2'],
        capture_output=True, text=True, env=env, timeout=600)
    out = res.stdout
    assert res.returncode == 0, res.stderr[-3000:]
    for stage in ('decode', 'augment', 'targets', 'batchify', 'transfer', 'total'):
        assert '\n  {} '.format(stage) in out
    assert 'simplejpeg' in out and 'faster' in out
    assert 'gluoncv_fp16 dense (before)' in out and 'main thread' in out and 'enqueue' in out
    assert 'in step' in out
    assert 'in epoch 0, 0 in epoch 1' in out  # --cache ram: the second epoch decodes nothing
    assert 'uint8 image vs float32 image' in out and 'grey levels' in out
    assert 'to feed 500 img/s' in out and 'worker cores' in out
    assert 'from_numpy(zero_copy=True) (current)' in out
