"""The README command's numerics fingerprint (gluoncv_fp16.bench.fingerprint) against
tests/data/readme_fingerprint.json, and negative controls: edits that change the
command's numerics must move it beyond its tolerance."""
import copy
import os
import re
import shlex

import pytest

from gluoncv_fp16.bench import fingerprint as fp

HERE = os.path.dirname(os.path.abspath(__file__))
STORED = os.path.join(HERE, 'data', 'readme_fingerprint.json')
RECORD = 'python -m gluoncv_fp16.bench.fingerprint --write tests/data/readme_fingerprint.json'


@pytest.fixture(scope='module')
def stored():
    return fp.load(STORED)


@pytest.fixture(scope='module')
def dataset_root(tmp_path_factory):
    from gluoncv_fp16.data import ensure_synthetic
    return ensure_synthetic(str(tmp_path_factory.mktemp('fingerprint') / 'synthetic'))


@pytest.fixture(scope='module')
def readme(stored, dataset_root):
    return fp.compare(stored, fp.fingerprint(dataset_root=dataset_root))


def changed(stored, dataset_root, segment, changes, steps=None):
    measured = fp.fingerprint((segment,), changes, dataset_root, steps=steps)
    return fp.compare(stored, measured)[segment]


def largest(differences):
    return max(d for d, _ in differences.values())


def test_the_fingerprinted_command_is_the_readme_command():
    with open(os.path.join(os.path.dirname(HERE), 'README.md')) as f:
        text = re.sub(r'\s*\\\n\s*', ' ', f.read())  # a command continued with `\` is one line
    assert 'python train_yolo3.py ' + shlex.join(fp.README_ARGS) in text


def test_readme_fingerprint_matches_within_the_cross_cpu_tolerance(readme, stored):
    assert all(r['portable_ok'] for r in readme.values()), (
        fp.describe(readme, stored) + '\nif intended: re-measure the docs\' figures, then '
        + RECORD)


def test_readme_trajectory_equals_the_recording_for_this_cpu_and_cap(readme, stored):
    if any(r['trajectory'] is None for r in readme.values()):
        pytest.skip('no trajectory recorded for {}'.format(fp.machine_key()))
    assert all(r['trajectory_ok'] for r in readme.values()), (
        fp.describe(readme, stored) + '\nif intended: re-measure the docs\' figures, then '
        + RECORD)


def test_comparison_flags_a_loss_scale_change_and_judges_trajectories_per_machine(stored):
    reference = stored['recordings'][0]
    key = {k: reference[k] for k in fp.machine_key()}
    rows = copy.deepcopy(reference['rows'])
    report = fp.compare(stored, rows, key)
    assert all(r['portable_ok'] and r['trajectory_ok'] for r in report.values())
    rows['fp16'][2]['loss_scale'] *= 2
    rows['readme'][-1]['obj_loss'] *= 1 + 1e-7  # past the portable rows: trajectory only
    rows['fp16'][-1]['phase'] = 'fp32'
    report = fp.compare(stored, rows, key)
    assert report['fp16']['exact'] == [3] and not report['fp16']['portable_ok']
    assert report['fp16']['phases'] == [rows['fp16'][-1]['iteration']]
    assert report['readme']['portable_ok'] and report['readme']['trajectory_ok'] is False
    other = fp.compare(stored, rows, dict(key, cpu='another CPU'))
    assert other['readme']['portable_ok'] and other['readme']['trajectory'] is None


def test_a_flag_of_the_command_cannot_be_changed_to_no_value():
    with pytest.raises(fp.FingerprintError, match='--lr is in the README command'):
        fp.segment_command('readme', 'prefix/', 'root', {'--lr': None})
    args = fp.segment_command('fp16', 'prefix/', 'root', {'--save-prefix': 'other/'})
    assert args[args.index('--save-prefix') + 1] == 'prefix/'  # the run's own folder wins
    assert args[args.index('--fp32-warmup-epochs') + 1] == '0'


def test_the_readme_segment_covers_the_switch_to_fp16(stored):
    rows = stored['recordings'][0]['rows']['readme']
    schedule = stored['segments']['readme']['schedule_steps']
    phases = [r['phase'] for r in rows]
    assert phases == ['fp32'] * schedule + ['fp16'] * (len(rows) - schedule)
    assert all(r['loss_scale'] == 1 and not r['skipped'] for r in rows[:schedule])
    assert any(r['skipped'] for r in rows[schedule:]) and not rows[-1]['skipped']


# ----- negative controls: the same command, one number changed -----------------------------
def test_a_ten_percent_smaller_learning_rate_moves_the_portable_part(stored, dataset_root):
    report = changed(stored, dataset_root, 'readme', {'--lr': '0.0045'}, steps=12)
    assert report['portable']['lr'][0] > 10 * report['tolerance'], report
    assert not report['portable_ok'] and report['trajectory_ok'] is not True


def test_a_smaller_weight_decay_moves_the_trajectory(stored, dataset_root):
    report = changed(stored, dataset_root, 'readme', {'--wd': '0.0004'}, steps=12)
    # Weight decay first acts in step 1's update: no portable row sees it.
    assert report['portable_ok'], report
    if report['trajectory'] is None:
        pytest.skip('no trajectory recorded for {}'.format(fp.machine_key()))
    assert report['trajectory_ok'] is False and largest(report['trajectory']) > 1e-2, report


def test_a_later_switch_to_fp16_moves_the_portable_part(stored, dataset_root):
    report = changed(stored, dataset_root, 'readme', {'--fp32-warmup-epochs': '3'})
    # Steps 51-70 stay in FP32: the phase is portable, wherever the CPU rounds.
    assert report['phases'] == list(range(51, 71)) and not report['portable_ok'], report


def test_another_seed_moves_the_portable_part(stored, dataset_root):
    portable = stored['segments']['fp16']['portable_steps']
    report = changed(stored, dataset_root, 'fp16', {'--seed': '2'}, steps=portable)
    assert largest(report['portable']) > 10 * report['tolerance'], report
    assert not report['portable_ok']
