"""scripts/precision_study.py (gluoncv_fp16.bench.precision_study): runs each mode in its own
process and reports divergence."""
import csv
import os

from gluoncv_fp16.bench import precision_study as study


def test_table_marks_diverged_and_unavailable_runs():
    rows = [dict(mode='fp32', lr=0.01, batch_size=8, status='ok', steps=5, skipped_steps=0,
                 final_loss=12.5, map=0.1, loss_scale=1.0),
            dict(mode='fp16-noscale', lr=0.01, batch_size=8, status='diverged',
                 diverged_at=2, steps=1, skipped_steps=0, final_loss=float('nan'),
                 map=float('nan'), loss_scale=1.0),
            dict(mode='amp', lr=0.01, batch_size=8, status='n/a', error='needs a GPU')]
    table = study.markdown(rows).splitlines()
    assert 'trains' in table[2] and '12.50' in table[2]
    assert 'diverged (NaN at it. 2)' in table[3]
    assert 'n/a: needs a GPU' in table[4]


def test_short_study_on_cpu(tmp_path, synthetic_root, capsys):
    prefix = str(tmp_path / 'study')
    # 24 training images at batch 8: --iters 4 needs a second epoch
    study.main(['--modes', 'fp32,fp16-dynamic', '--lrs', '0.001', '--iters', '4',
                '--data-shape', '64', '--batch-sizes', '8', '--dataset-root', synthetic_root,
                '--out', prefix])
    with open(prefix + '.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [(r['mode'], r['status']) for r in rows] == [('fp32', 'ok'), ('fp16-dynamic', 'ok')]
    assert [int(r['steps']) for r in rows] == [4, 4] and float(rows[0]['final_loss']) > 0
    assert os.path.getsize(prefix + '.png') > 1000
    assert '| fp16-dynamic | 0.001 | 8 | trains |' in capsys.readouterr().out
