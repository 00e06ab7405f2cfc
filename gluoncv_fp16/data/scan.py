"""Check a dataset's images before training, so that damage is found at start-up.

A truncated or missing validation image would otherwise surface only at the first
validation, after a whole training epoch -- under ``strict=True`` as an error that
loses that epoch. The scan reads each file and checks its structure without decoding
pixels (:func:`.imageio.check_encoded`: end marker, frame header); what it finds goes to
the dataset's :class:`.imageio.BadSampleLog` under the same reasons a decode records, so
it is counted once and, when the dataset is strict, raises :class:`.imageio.BadSampleError`
at the first problem. Cost: docs/data.md ("Start-up scan").
"""
import logging
import time

from .imageio import check_encoded

__all__ = ['scan_images']

logger = logging.getLogger(__name__)


def scan_images(dataset, role='validation'):
    """Check every image of `dataset`; returns the number of images found unusable.

    Parameters
    ----------
    dataset : DetectionDataset
        Problems are recorded in ``dataset.bad_samples`` (which raises when strict).
    role : str
        'training' or 'validation', for the messages.
    """
    start, problems = time.time(), []
    for idx in range(len(dataset)):
        name = dataset.image_name(idx)
        try:
            found = check_encoded(dataset.read_encoded(idx))
        except FileNotFoundError:
            found = ('missing image', '')
        except OSError as err:
            found = ('unreadable image', err.strerror or str(err))
        if found is not None:
            dataset.bad_samples.report(name, *found)
            problems.append(found[0])
    logger.info('checked %d %s images in %.2f s: %s', len(dataset), role,
                time.time() - start, '{} unusable'.format(len(problems)) if problems
                else 'all usable')
    if problems:
        kinds = ', '.join('{} x {}'.format(problems.count(k), k) for k in sorted(set(problems)))
        consequence = ('each is evaluated as a gray image, which lowers the mAP' if role ==
                       'validation' else 'each is replaced by the next usable image')
        logger.warning('%d of %d %s images are unusable (%s); %s. Fix or remove them '
                       '(--strict-data refuses such a set)', len(problems), len(dataset),
                       role, kinds, consequence)
    return len(problems)
