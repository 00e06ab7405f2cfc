"""argparse value types the scripts share."""
import argparse

__all__ = ['data_side']


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
