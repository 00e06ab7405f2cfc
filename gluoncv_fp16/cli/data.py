"""Report on a dataset before training on it: classes, boxes, sizes, and what is wrong.

``gluoncv-fp16-data`` or ``python -m gluoncv_fp16.cli.data``, with the dataset flags of
training (declared once, in :class:`~gluoncv_fp16.train.config.TrainConfig`):

    gluoncv-fp16-data --dataset custom --dataset-root /data/mine --data-shape 416
    gluoncv-fp16-data --dataset voc --save-prefix runs/ --strict-data

Prints images and boxes per class, boxes per image, background images, box sizes and
aspect ratios at --data-shape, and every problem by file (boxes outside the image,
zero-area or duplicate boxes, boxes under 2 px at the data shape, classes only in
validation, unreadable images); writes ``<save-prefix><dataset>_labels.png``. With
--strict-data a data error is one line and exit code 2, and nothing is written
(docs/data.md, "Dataset report").
"""
import argparse
import logging
import os
import sys

from ..errors import USER_ERRORS, ConfigError
from ..train.config import FLAG_GROUPS, TrainConfig
from ..utils.options import add_flags, from_namespace

__all__ = ['main', 'parse_args', 'FIELDS']

# the TrainConfig fields this command shares with training
FIELDS = ('dataset', 'dataset_root', 'classes', 'data_shape', 'save_prefix', 'strict_data')


def parse_args(argv=None):
    """The parsed command line (argparse's own errors exit 2 with usage)."""
    parser = argparse.ArgumentParser(
        prog='gluoncv-fp16-data', description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return add_flags(parser, TrainConfig, FLAG_GROUPS, fields=FIELDS).parse_args(argv)


def run(cfg):
    """Build the datasets as training does, report, write the PNG; returns the report."""
    from ..data.datasets import build_datasets
    from ..data.report import build_report
    try:
        train, val, classes = build_datasets(
            cfg.dataset, root=cfg.dataset_root, strict=cfg.strict_data,
            classes=list(cfg.classes) if cfg.classes else None)
        report = build_report(train, val, classes, cfg.data_shape, check_images=True)
    except (ValueError, OSError) as err:  # missing folders, split files, unknown classes
        if isinstance(err, USER_ERRORS):
            raise
        raise ConfigError(str(err)) from None
    if cfg.strict_data and report.errors:
        raise ConfigError(report.error_line())
    for line in report.summary_lines():
        print(line)
    for line in report.problem_lines():
        print(line)
    if not report.problems:
        print('no problems found')
    path = cfg.save_prefix + cfg.dataset + '_labels.png'
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    print('wrote {}'.format(report.write_png(path)))
    return report


def main(argv=None):
    """Run the command; returns the exit code (0, or 2: a user's mistake or, with
    --strict-data, a data error)."""
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')
    args = parse_args(argv)
    try:
        run(from_namespace(TrainConfig, args, fields=FIELDS).validate())
    except USER_ERRORS as err:
        print('error: {}'.format(err), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
