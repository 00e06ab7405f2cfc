"""argparse value types the scripts share."""
import argparse

__all__ = ['data_side', 'fraction']


def data_side(text):
    """An input side: a positive multiple of 32 (YOLOv3's largest stride)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 32 or value % 32:
        raise argparse.ArgumentTypeError(
            'must be a multiple of 32 (YOLOv3 stride), e.g. 320 or 416, got {}'.format(text))
    return value


def fraction(text):
    """A number between 0 and 1 (a score threshold)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError('must be between 0 and 1, got {}'.format(text))
    return value
