"""scripts/benchmark_data.py runs end to end and prints every table (tiny settings)."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_data_prints_stages_main_process_cache_and_sizing(capsys):
    spec = importlib.util.spec_from_file_location(
        'benchmark_data', os.path.join(ROOT, 'scripts', 'benchmark_data.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(['--network', 'yolo3_mobilenet0.25_voc', '--size', '64', '--image-size',
                 '96x72', '--batch-size', '2', '--rounds', '1', '--stage-images', '2',
                 '--main-batches', '1', '--workers', '1', '--target-ips', '500'])
    out = capsys.readouterr().out
    for stage in ('decode', 'augment', 'targets', 'batchify', 'transfer', 'total'):
        assert '\n  {} '.format(stage) in out
    assert 'simplejpeg' in out and 'faster' in out
    assert 'gluoncv_fp16 (float16 image)' in out and 'receive+copy' in out
    assert 'in epoch 0, 0 in epoch 1' in out  # --cache ram: the second epoch decodes nothing
    assert 'to feed 500 img/s' in out and 'worker cores' in out
