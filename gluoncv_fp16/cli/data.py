"""Report on a dataset before training on it: classes, boxes, sizes, and what is wrong.

``gluoncv-fp16-data`` or ``python -m gluoncv_fp16.cli.data``, with the dataset flags of
training (their declarations are the fields of
:class:`~gluoncv_fp16.train.config.TrainConfig`, reused here as they are):

    gluoncv-fp16-data --dataset custom --dataset-root /data/mine --data-shape 416
    gluoncv-fp16-data --dataset voc --save-prefix runs/ --strict-data

The datasets are built as training builds them. Prints images and boxes per class, boxes
per image, background images, box sizes and aspect ratios at --data-shape, and every
problem by file (boxes outside the image, zero-area or duplicate boxes, boxes under 2 px
at the data shape, classes only in validation, unreadable images); writes
``<save-prefix><dataset>_labels.png``. With --strict-data a data error is one line and
exit code 2, and nothing is written (docs/data.md, "Dataset report").
"""
import dataclasses
import os
import sys

from ..train.config import DATASET_FIELDS, FLAG_GROUPS, TrainConfig
from .command import Command

__all__ = ['DataSettings', 'COMMAND', 'main', 'run', 'FIELDS']

# The TrainConfig fields this command shares with training (listed in TrainConfig's
# order): the dataset's (a format described by files adds its fields to DATASET_FIELDS,
# and they reach this command and eval without an edit here) and the report's.
FIELDS = DATASET_FIELDS + ('data_shape', 'save_prefix', 'strict_data')


def _validate(settings):
    """Every check training makes of these settings (the others at their defaults)."""
    settings.train_config()
    return settings


def _train_config(settings):
    """The validated `TrainConfig` of these settings (the rest at training's defaults)."""
    return TrainConfig(**dataclasses.asdict(settings)).validate()


DataSettings = dataclasses.make_dataclass(
    'DataSettings',
    [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
     for f in dataclasses.fields(TrainConfig) if f.name in FIELDS],
    namespace={'validate': _validate, 'train_config': _train_config,
               '__doc__': "The data command's settings: training's dataset fields."},
    frozen=True)
DataSettings.__module__ = __name__


def run(settings):
    """Build the datasets as training does, report, write the PNG; returns the exit
    code. With --strict-data a data error raises `ConfigError` before anything is
    written."""
    from ..data.report import build_report
    from ..data.scan import scan_images
    from ..train.build import build_data
    cfg = settings.train_config()
    train, val, classes = build_data(cfg)  # scans validation (and training when strict)
    if not cfg.strict_data:
        scan_images(train, 'training')
    report = build_report(train, val, classes, cfg.data_shape)
    if cfg.strict_data and report.errors:
        from ..errors import ConfigError
        raise ConfigError(report.error_line())
    for line in report.summary_lines() + (report.problem_lines() or ['no problems found']):
        print(line)
    path = cfg.save_prefix + cfg.dataset + '_labels.png'
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    print('wrote {}'.format(report.write_png(path)))
    return 0


COMMAND = Command('data', DataSettings, FLAG_GROUPS, run, __doc__.splitlines()[0])


def main(argv=None):
    """The data command; returns the exit code (2: a user's mistake or, with
    --strict-data, a data error: one line)."""
    return COMMAND.main(argv)


if __name__ == '__main__':
    sys.exit(main())
