"""gluoncv_fp16.bench.isa_spread: one self-check comparison per oneDNN cap, in children."""
import json
import subprocess
import sys


def test_self_check_figures_under_two_caps_are_within_their_thresholds():
    done = subprocess.run(
        [sys.executable, '-m', 'gluoncv_fp16.bench.isa_spread', 'self-check', '--caps',
         'default,AVX2', '--networks', 'mobilenet0.25', '--data-shapes', '64'],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{')]
    assert [r['cap'] for r in rows] == ['default', 'AVX2'], done.stdout[-2000:]
    for row in rows:
        assert not row['problem'] and row['images'] == 16
        assert min(row['loss_margin'], row['cosine_margin'], row['norm_margin']) > 1, row
