"""scripts/compare_precision.py (gluoncv_fp16.bench.compare): the statistics on crafted
numbers, the refusals, and one tiny study that trains fp32 and fp16 over two seeds."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest

from gluoncv_fp16.bench import compare

FP32 = {1: 0.50, 2: 0.52, 3: 0.48, 4: 0.51}
FP16 = {1: 0.49, 2: 0.50, 3: 0.47, 4: 0.49}  # 0.01 or 0.02 below FP32 on every seed
FIELDS = ('epoch', 'phase', 'loss_scale', 'skipped_steps', 'map', 'images_per_sec')


def test_describe_is_mean_and_sample_sd():
    d = compare.describe([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert d['n'] == 8 and d['mean'] == pytest.approx(5.0)
    assert d['sd'] == pytest.approx(math.sqrt(32 / 7))  # ddof=1, not the population 2.0
    one = compare.describe([0.3, float('nan')])
    assert one['n'] == 1 and one['mean'] == 0.3 and math.isnan(one['sd'])


def test_paired_interval_by_hand_excludes_zero():
    diff = compare.paired_difference(FP16, FP32)
    # differences -0.01, -0.02, -0.01, -0.02: mean -0.015, sd 0.005 / sqrt(0.75),
    # t(0.975, 3) = 3.182446 (tables: 3.182), half width t sd / sqrt(4)
    sd = 0.005 / math.sqrt(0.75)
    half = 3.182446305 * sd / 2
    assert diff['n'] == 4 and diff['seeds'] == [1, 2, 3, 4]
    assert diff['mean'] == pytest.approx(-0.015) and diff['sd'] == pytest.approx(sd)
    assert diff['ci'] == pytest.approx([-0.015 - half, -0.015 + half])
    assert diff['ci'] == pytest.approx([-0.0241869, -0.0058131], abs=1e-7)
    assert compare.verdict('fp16', diff) == \
        'fp16 lower by 0.0150 (95% CI [-0.0242, -0.0058])'


def test_welch_interval_is_wider_and_includes_zero_here():
    welch = compare.welch_difference(list(FP16.values()), list(FP32.values()))
    # scipy.stats.ttest_ind(FP16, FP32, equal_var=False).confidence_interval()
    assert welch['mean'] == pytest.approx(-0.015)
    assert welch['df'] == pytest.approx(5.515763, abs=1e-6)
    assert welch['ci'] == pytest.approx([-0.0415159, 0.0115159], abs=1e-7)


def test_interval_that_includes_zero_and_higher():
    same = compare.paired_difference({1: 0.51, 2: 0.51, 3: 0.50, 4: 0.49}, FP32)
    assert same['ci'][0] < 0 < same['ci'][1]
    assert compare.verdict('fp16', same).startswith('not decided at n=4 (95% CI [-')
    higher = compare.paired_difference({s: v + 0.03 + 0.001 * s for s, v in FP32.items()},
                                       FP32)
    assert compare.verdict('amp', higher).startswith('amp higher by 0.0325 (95% CI [+0.0')


def test_an_interval_inside_the_margin_says_equivalent():
    # differences +0.002, -0.001, +0.001, 0.000: mean 0.0005, sd 0.0012910, half width
    # 3.182446 * 0.0012910 / 2 = 0.0020543: the interval [-0.0016, +0.0026] is inside +-0.02
    close = compare.paired_difference({1: 0.502, 2: 0.519, 3: 0.481, 4: 0.51}, FP32)
    assert close['ci'] == pytest.approx([0.0005 - 0.0020543, 0.0005 + 0.0020543], abs=1e-6)
    assert compare.verdict('fp16', close) == \
        'equivalent within +-0.0200 at n=4 (95% CI [-0.0016, +0.0026])'
    # the same runs against a margin the interval does not fit in
    assert compare.verdict('fp16', close, margin=0.002).startswith(
        'not decided at n=4 (95% CI [-0.0016, +0.0026]): it includes 0 and reaches beyond '
        '+-0.0020; about ')


def test_pairs_to_decide_by_hand():
    # mean 0, sd 0.06, margin 0.02: the smallest n with t(0.975, n-1) 0.06 / sqrt(n) <= 0.02
    # is 38 (t(36) = 2.02809: 0.020005 at n = 37; t(37) = 2.02619: 0.019722 at n = 38)
    flat = {'mean': 0.0, 'sd': 0.06, 'n': 12, 'ci': [-0.038, 0.038]}
    assert compare.pairs_to_decide(flat, 0.02) == 38
    # a mean of -0.022 beyond the margin: deciding means excluding 0, half width <= 0.022:
    # 0.022008 at n = 31 (t(30) = 2.04227), 0.021632 at n = 32
    assert compare.pairs_to_decide(dict(flat, mean=-0.022), 0.02) == 32
    assert compare.pairs_to_decide(dict(flat, sd=0.0), 0.02) == 2
    assert compare.pairs_to_decide(dict(flat, ci=None), 0.02) is None
    # the verdict quotes it
    assert compare.verdict('fp16', flat).endswith(
        'about 38 pairs would decide at this mean and sd')


def test_one_seed_gives_no_interval_and_says_so():
    diff = compare.paired_difference({1: 0.4, 2: 0.5}, {1: 0.45, 3: 0.5})
    assert diff['n'] == 1 and diff['ci'] is None and diff['mean'] == pytest.approx(-0.05)
    assert 'n=1: no interval' in compare.verdict('fp16', diff)
    assert compare.welch_difference([0.4], [0.45, 0.5])['ci'] is None
    assert compare.verdict('fp16', compare.paired_difference({1: 0.4}, {2: 0.4})) == \
        'no seed finished in both fp16 and fp32'


def run_rows(maps, scale=1.0, skipped=0, speed=10.0):
    return [dict(epoch=e, phase='fp16', loss_scale=scale, skipped_steps=skipped, map=m,
                 images_per_sec=speed + e) for e, m in enumerate(maps)]


def test_summary_per_mode_counts_failed_runs():
    runs = [dict(mode='fp32', seed=s, **compare.summarize_run(run_rows([0.1, v]), 2))
            for s, v in FP32.items()]
    runs += [dict(mode='fp16', seed=s, **compare.summarize_run(
        run_rows([0.9, v], scale=2.0 ** s, skipped=s), 2)) for s, v in FP16.items()]
    runs.append(dict(mode='fp16', seed=5, error='exit 1: boom',
                     **compare.summarize_run(run_rows([0.2]), 2)))
    table = compare.summarize(runs, ['fp32', 'fp16'])
    fp16 = table['fp16']
    assert (fp16['finished'], fp16['failed']) == (4, 1)
    assert fp16['final_map']['mean'] == pytest.approx(0.4875)
    assert fp16['best_map']['mean'] == pytest.approx(0.9) and fp16['best_map']['sd'] == 0
    assert fp16['skipped_steps'] == pytest.approx(2 * 2.5)  # two epochs of s skips each
    assert fp16['loss_scale'] == pytest.approx(6.0)  # median of 2, 4, 8, 16
    assert fp16['images_per_sec'] == pytest.approx(10.5)
    assert fp16['paired_final']['ci'] == pytest.approx([-0.0241869, -0.0058131], abs=1e-7)
    assert fp16['verdict'].startswith('fp16 lower by 0.0150')
    assert table['fp32']['final_map']['n'] == 4 and 'verdict' not in table['fp32']
    lines = compare.markdown(table, runs).splitlines()
    assert lines[2].startswith('| fp32 | 4 (0) | 0.5025 ± 0.0171 |')
    assert lines[3].startswith('| fp16 | 5 (1) | 0.4875 ± 0.0126 | 0.9000 ± 0.0000 | '
                               'n=4: -0.0150 ± 0.0058 [-0.0242, -0.0058] | '
                               '[-0.0415, +0.0115] | 5.0 | 6 | 10.5 | fp16 lower by')
    assert lines[-1] == '- failed: fp16 seed 5: exit 1: boom'


def write_run(out, mode, seed, rows, status=None):
    folder = compare.run_dir(str(out), mode, seed)
    os.makedirs(folder)
    with open(os.path.join(folder, 'yolo3_x_synthetic_metrics.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    if status is not None:
        with open(os.path.join(folder, 'run.json'), 'w') as f:
            json.dump(status, f)


def test_report_only_reads_a_study_folder(tmp_path, capsys):
    for seed, value in FP32.items():
        write_run(tmp_path, 'fp32', seed, run_rows([0.1, value]))
        write_run(tmp_path, 'fp32-fp16:1', seed, run_rows([0.1, FP16[seed]]))
    write_run(tmp_path, 'fp32-fp16:1', 5, run_rows([0.1]),
              {'returncode': 1, 'error': 'FloatingPointError: 50 skips in a row'})
    os.makedirs(str(tmp_path / 'notes'))
    assert compare.main(['--out', str(tmp_path), '--report-only', '--', '--epochs', '2']) == 1
    out = capsys.readouterr().out
    assert '| fp32-fp16:1 | 5 (1) | 0.4875 ± 0.0126 |' in out
    assert '- failed: fp32-fp16:1 seed 5: FloatingPointError: 50 skips in a row' in out
    with open(str(tmp_path / 'compare.json')) as f:
        result = json.load(f)
    assert result['modes']['fp32-fp16:1']['paired_final']['mean'] == pytest.approx(-0.015)
    assert os.path.getsize(str(tmp_path / 'compare_map.png')) > 1000
    assert not os.path.exists(str(tmp_path / 'study.json'))  # report-only writes no study


def test_held_out_difference_error_by_hand():
    """Resample b holds the same images in every run: per b the mean over seeds of
    fp16 - fp32 is 0, 0.05, 0.1 here, sd 0.05."""
    def held(samples, images=100):
        return {'samples': samples, 'images': images, 'seed': 0}
    fp16 = {1: held([0.5, 0.6, 0.7]), 2: held([0.4, 0.4, 0.4]), 3: held([0.9, 0.9, 0.9])}
    fp32 = {1: held([0.5, 0.5, 0.5]), 2: held([0.4, 0.4, 0.4])}
    assert compare.held_out_difference_error(fp16, fp32) == pytest.approx(0.05)
    fp32[2] = held([0.4, 0.4, 0.4], images=99)  # other images: resamples not paired
    assert math.isnan(compare.held_out_difference_error(fp16, fp32))
    assert math.isnan(compare.held_out_difference_error(fp16, {}))


HELD_FP32 = {1: 0.40, 2: 0.42, 3: 0.41, 4: 0.40}
HELD_FP16 = {1: 0.38, 2: 0.40, 3: 0.39, 4: 0.37}  # 0.02 or 0.03 below, every seed


def _held_out_study(tmp_path):
    """Finished runs whose validation says 'no difference' and whose held-out says
    fp16 is lower; each with a stand-in final checkpoint and its cached evaluation."""
    out, root = tmp_path / 'study', tmp_path / 'heldout'
    os.makedirs(str(root / 'Annotations'))
    same = {1: 0.51, 2: 0.51, 3: 0.50, 4: 0.49}
    for mode, val, held in (('fp32', FP32, HELD_FP32), ('fp16', same, HELD_FP16)):
        for seed in val:
            write_run(out, mode, seed, run_rows([0.1, val[seed]]))
            folder = compare.run_dir(str(out), mode, seed)
            checkpoint = os.path.join(folder, 'yolo3_x_synthetic_last.ckpt')
            with open(checkpoint, 'w') as f:
                f.write('weights')
            info = os.stat(checkpoint)
            with open(os.path.join(folder, compare.HELDOUT_FILE), 'w') as f:
                json.dump({'map': held[seed], 'sd': 0.01, 'ci95': [0, 1], 'images': 1000,
                           'seed': 0, 'resamples': 200, 'samples': [held[seed]] * 3,
                           'checkpoint': os.path.basename(checkpoint),
                           'size': info.st_size, 'mtime_ns': info.st_mtime_ns,
                           'eval_root': str(root)}, f)
    return str(out), str(root)


def test_the_verdict_reads_the_held_out_evaluation_when_there_is_one(tmp_path, capsys):
    out, root = _held_out_study(tmp_path)
    argv = ['--out', out, '--report-only', '--eval-root', root, '--', '--epochs', '2']
    assert compare.main(argv) == 0
    text = capsys.readouterr().out
    assert 'held-out evaluation:' not in text  # every run's cached evaluation is reused
    assert 'The verdict reads the paired interval of the held-out final mAP' in text
    assert '| fp32 | 0.4075 ± 0.0096 | 0.0100 | reference | - |' in text
    # differences -0.02, -0.02, -0.02, -0.03: mean -0.0225, sd 0.005
    assert '| fp16 | 0.3850 ± 0.0129 | 0.0100 | n=4: -0.0225 ± 0.0050 [-0.0305, -0.0145] | ' \
        '0.0000 |' in text
    assert 'fp16 lower by 0.0225 (95% CI [-0.0305, -0.0145]) (held-out) |' in text
    with open(os.path.join(out, 'compare.json')) as f:
        fp16 = json.load(f)['modes']['fp16']
    assert fp16['paired_final']['ci'][0] < 0 < fp16['paired_final']['ci'][1]  # validation
    assert fp16['paired_heldout']['mean'] == pytest.approx(-0.0225)
    assert compare.main(['--out', out, '--report-only', '--', '--epochs', '2']) == 0
    assert 'reads the paired interval of the final mAP.' in capsys.readouterr().out


def test_a_held_out_evaluation_is_redone_only_for_a_new_checkpoint(tmp_path):
    out, root = _held_out_study(tmp_path)
    runs = compare.collect_runs(out, 2)
    calls = []

    def fake(checkpoint, eval_root, folder, resamples):
        calls.append((folder, resamples))
        return {'map': 0.3, 'sd': 0.02, 'ci95': [0.26, 0.34], 'images': 1000, 'seed': 0,
                'resamples': resamples, 'samples': [0.3, 0.3]}
    compare.evaluate_held_out(out, runs, root, evaluate=fake)
    assert calls == [] and len([r for r in runs if r.get('heldout')]) == 8
    folder = compare.run_dir(out, 'fp16', 3)
    with open(os.path.join(folder, 'yolo3_x_synthetic_last.ckpt'), 'a') as f:
        f.write(' resumed')  # another final checkpoint
    compare.evaluate_held_out(out, runs, root, evaluate=fake)
    assert calls == [(folder, 200)]
    assert [r['heldout']['map'] for r in runs if (r['mode'], r['seed']) == ('fp16', 3)] == [0.3]
    compare.evaluate_held_out(out, runs, root, resamples=50, evaluate=fake)
    assert len(calls) == 9 and calls[-1][1] == 50  # other resamples: every run again


@pytest.mark.parametrize('argv', [
    ['--modes', 'fp32,bf16', '--seeds', '1'],
    ['--modes', 'fp32,fp32-fp16', '--seeds', '1'],
    ['--modes', 'fp32,fp16', '--seeds', '1,2,1'],
    ['--modes', 'fp32,fp16', '--seeds', '1,x'],
    ['--modes', 'fp32,fp16,fp32', '--seeds', '1'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--', '--seed', '3'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--', '--save-prefix=runs/'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--', '--fp16'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--', '--amp'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--', '--fp32-warmup-epochs', '1'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--', '--see', '3'],  # argparse's abbreviation
    ['--modes', 'fp32,fp16', '--seeds', '1', '--', '--epochs', 'ten'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--eval-root', '/nonexistent'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--margin', '0'],
    ['--modes', 'fp32,fp16', '--seeds', '1', '--margin', '1.5'],
])
def test_refusals_are_one_line_and_run_nothing(tmp_path, capsys, argv):
    out = str(tmp_path / 'study')
    argv = argv[:argv.index('--')] + ['--out', out] + argv[argv.index('--'):] \
        if '--' in argv else argv + ['--out', out, '--', '--epochs', '1']
    assert compare.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('compare_precision.py: error: ')
    assert not os.path.exists(out)


def test_tiny_study_runs_both_modes_and_reuses_finished_runs(tmp_path, synthetic_root,
                                                             capsys):
    out = str(tmp_path / 'study')
    argv = ['--modes', 'fp32,fp16', '--seeds', '1,2', '--out', out, '--',
            '--network', 'mobilenet0.25', '--data-shape', '64', '--batch-size', '2',
            '--epochs', '1', '-j', '0', '--gpus', '', '--no-random-shape', '--no-self-check',
            '--no-plots', '--dataset', 'synthetic', '--dataset-root', synthetic_root,
            '--max-iters', '2']
    assert compare.main(argv) == 0
    first = capsys.readouterr().out
    assert [line.split(':')[0] for line in first.splitlines() if ': training (' in line] == [
        '[1/4] fp32 seed 1', '[2/4] fp16 seed 1', '[3/4] fp32 seed 2', '[4/4] fp16 seed 2']
    for mode in ('fp32', 'fp16'):
        assert '| {} | 2 (0) | 0.'.format(mode) in first
        for seed in (1, 2):
            folder = compare.run_dir(out, mode, seed)
            assert os.path.isfile(os.path.join(folder, 'run.out'))
            assert any(f.endswith('_metrics.csv') for f in os.listdir(folder))
    with open(os.path.join(out, 'compare.json')) as f:
        result = json.load(f)
    fp16 = result['modes']['fp16']
    assert fp16['finished'] == 2 and 0 <= fp16['final_map']['mean'] <= 1
    assert fp16['paired_final']['n'] == 2 and len(fp16['paired_final']['ci']) == 2
    assert fp16['skipped_steps'] >= 0 and fp16['images_per_sec'] > 0
    assert result['modes']['fp32']['loss_scale'] == 1
    assert os.path.getsize(os.path.join(out, 'compare_map.png')) > 1000
    with open(os.path.join(out, 'compare.md')) as f:
        assert f.read().endswith(first[first.index('# Precision parity study'):])

    from gluoncv_fp16.data import generate
    root = generate(str(tmp_path / 'heldout'), num_train=0, num_val=4, width=128,
                    height=128, seed=9)
    held_out = argv[:6] + ['--eval-root', root] + argv[6:]
    assert compare.main(held_out) == 0  # again: every run finished, nothing trains
    second = capsys.readouterr().out
    assert second.count('finished before, kept') == 4 and ': training (' not in second
    assert second.count('held-out evaluation: ') == 4, second  # each final checkpoint
    assert 'The verdict reads the paired interval of the held-out final mAP' in second
    assert '| mode | held-out final mAP |' in second and '(held-out) |' in second
    for mode in ('fp32', 'fp16'):
        for seed in (1, 2):
            with open(os.path.join(compare.run_dir(out, mode, seed),
                                   compare.HELDOUT_FILE)) as f:
                held = json.load(f)
            assert held['images'] == 4 and len(held['samples']) == 200
            assert held['eval_root'] == os.path.abspath(root) and 0 <= held['map'] <= 1
    assert compare.main(held_out[:6] + ['--report-only'] + held_out[6:]) == 0
    assert 'held-out evaluation: ' not in capsys.readouterr().out  # kept, not redone
    with open(os.path.join(compare.run_dir(out, 'fp16', 2), 'run.out')) as f:
        assert f.read().count('$ ') == 1
    assert compare.main(argv[:-1] + ['3']) == 2  # one study, one configuration
    assert 'holds a study of other training arguments' in capsys.readouterr().err


def test_two_processes_on_one_study_folder_do_not_train_the_same_run(tmp_path, monkeypatch,
                                                                      capsys):
    out = str(tmp_path)
    holder = subprocess.Popen(  # another compare process, training fp32 seed 1
        [sys.executable, '-c', 'import sys; from gluoncv_fp16.bench import compare; '
         'assert compare.claim_run(sys.argv[1], "fp32", 1) is not None; print("held", '
         'flush=True); sys.stdin.read()', out],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        leftover = os.path.join(compare.run_dir(out, 'fp16', 1), compare.RUNNING)
        os.makedirs(os.path.dirname(leftover))
        with open(leftover, 'w') as f:
            f.write('12345\n')  # a mark nobody holds (a killed study's) blocks nothing
        trained = []
        monkeypatch.setattr(compare, 'run_one', lambda o, mode, seed, args, lock:
                            trained.append((mode, seed)) or (1, 'x'))
        compare.run_study(out, ['fp32', 'fp16'], [1], [], 1)
        assert trained == [('fp16', 1)]
        assert 'fp32 seed 1: being trained by another process, skipped' in \
            capsys.readouterr().out
    finally:
        holder.communicate('')
    lock = compare.claim_run(out, 'fp32', 1)  # released when its holder ended
    assert lock is not None
    os.close(lock)


def test_the_training_child_keeps_the_run_locked(tmp_path):
    lock = compare.claim_run(str(tmp_path), 'fp16', 3)
    child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],
                             stdin=subprocess.PIPE, pass_fds=(lock,))  # as run_one passes it
    os.close(lock)  # the compare process is gone; its training child is not
    try:
        assert compare.claim_run(str(tmp_path), 'fp16', 3) is None
    finally:
        child.communicate(b'')
    again = compare.claim_run(str(tmp_path), 'fp16', 3)
    assert again is not None
    os.close(again)
