"""scripts/benchmark.py (gluoncv_fp16.bench.benchmark): one process per mode, markdown
table, CSV and PNG."""
import csv
import os

import pytest

from gluoncv_fp16.bench import benchmark as bench


def test_ratios_and_table_from_measured_rows():
    rows = [dict(mode='fp32', label='fp32', network='n', data_shape=64, batch_size=2,
                 images_per_sec=10.0, images_per_sec_min=9.0, images_per_sec_max=11.0,
                 peak_memory_mb=400.0, peak_tflops=15.7),
            dict(mode='fp16', label='fp16', network='n', data_shape=64, batch_size=2,
                 images_per_sec=30.0, images_per_sec_min=29.0, images_per_sec_max=31.0,
                 peak_memory_mb=220.0, peak_tflops=125.0),
            dict(mode='amp', label='amp', network='n', error='needs a GPU')]
    bench.add_ratios(rows, {('n', 64): 1e11})
    assert rows[1]['speedup_vs_fp32'] == pytest.approx(3.0)
    assert rows[1]['memory_vs_fp32'] == pytest.approx(0.55)
    assert rows[1]['tflops'] == pytest.approx(3.0)  # 1e11 FLOP/image * 30 img/s
    table = bench.markdown(rows).splitlines()
    assert table[0].startswith('| mode | network') and len(table) == 5
    assert '| 3.00 |' in table[3] and 'n/a: needs a GPU' in table[4]


def test_end_to_end_on_cpu_writes_table_csv_and_png(tmp_path, capsys):
    prefix = str(tmp_path / 'bench')
    bench.main(['--modes', 'fp32,fp16,amp', '--data-shapes', '64', '--batch-sizes', '2',
                '--warmup', '1', '--iters', '1', '--repeats', '2', '--out', prefix])
    out = capsys.readouterr().out
    assert '| fp16 (CPU half path) | mobilenet0.25 | 64 | 2 |' in out
    assert 'n/a: --amp on CPU' in out
    with open(prefix + '.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['mode'] for r in rows] == ['fp32', 'fp16', 'amp']
    assert float(rows[0]['images_per_sec']) > 0 and float(rows[1]['speedup_vs_fp32']) > 0
    assert float(rows[1]['peak_memory_mb']) > 0 and rows[2]['error']
    assert os.path.getsize(prefix + '.png') > 1000
