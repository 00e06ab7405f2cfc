"""Colour distortion as one affine map of RGB values.

GluonCV's ``random_color_distort`` applies brightness, contrast, saturation and hue as
four passes over a float32 NDArray. Each step is affine in the pixel's RGB vector, so
their composition is a single 3x3 matrix plus offset: one ``cv2.transform`` pass,
applied only to the pixels that survive the crop.
"""
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

__all__ = ['ColorJitter', 'draw_color_jitter']

_GRAY = np.array([0.299, 0.587, 0.114])
_RGB2YIQ = np.array([[0.299, 0.587, 0.114],
                     [0.596, -0.274, -0.321],
                     [0.211, -0.523, 0.311]])
_GRAY_ROWS = np.outer(np.ones(3), _GRAY)
_YIQ2RGB = np.array([[1.0, 0.956, 0.621],
                     [1.0, -0.272, -0.647],
                     [1.0, -1.107, 1.705]])


@dataclass(frozen=True)
class ColorJitter:
    """Parameters of one colour distortion; the defaults are the identity.

    Attributes
    ----------
    brightness : float
        Added to every channel first.
    contrast, saturation : float
        Multipliers (1 = unchanged).
    hue : float or None
        GluonCV's hue parameter (a rotation by ``hue * pi`` in YIQ space); None = off.
    contrast_first : bool
        Contrast before saturation and hue (else after), as GluonCV's coin decides.
    """
    brightness: float = 0.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: Optional[float] = None
    contrast_first: bool = True

    def affine(self):
        """(A, b) with distorted = A @ rgb + b, float64."""
        mat, off = np.eye(3), np.full(3, float(self.brightness))
        steps = [self._contrast, self._saturation, self._hue]
        if not self.contrast_first:
            steps = steps[1:] + steps[:1]
        for step in steps:
            mat, off = step(mat, off)
        return mat, off

    def is_identity(self):
        return self == ColorJitter(contrast_first=self.contrast_first)

    def apply(self, img):
        """(H, W, 3) image of any dtype -> float32 image with the distortion applied."""
        img = np.ascontiguousarray(img, dtype=np.float32)
        if self.is_identity() or img.size == 0:
            return img
        mat, off = self.affine()
        return cv2.transform(img, np.hstack([mat, off[:, None]]).astype(np.float32))

    # Each step maps (A, b) to (M @ A, M @ b); steps that are the identity are skipped
    # and a contrast is a plain scaling, which gives the same values as the products.
    def _contrast(self, mat, off):
        if self.contrast == 1:
            return mat, off
        return mat * self.contrast, off * self.contrast

    def _saturation(self, mat, off):
        if self.saturation == 1:
            return mat, off
        alpha = self.saturation
        m = alpha * np.eye(3) + (1.0 - alpha) * _GRAY_ROWS
        return m @ mat, m @ off

    def _hue(self, mat, off):
        if self.hue is None:
            return mat, off
        u, w = np.cos(self.hue * np.pi), np.sin(self.hue * np.pi)
        rot = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
        m = _YIQ2RGB @ rot @ _RGB2YIQ
        return m @ mat, m @ off


def draw_color_jitter(source, brightness_delta=32, contrast_range=(0.5, 1.5),
                      saturation_range=(0.5, 1.5), hue_delta=18):
    """Draw a :class:`ColorJitter` with GluonCV's probabilities, ranges and draw order.

    Each of the four distortions is applied with probability 1/2; a fair coin decides
    whether contrast comes before or after saturation and hue.
    """
    params = {}
    if source.uniform(0, 1) > 0.5:
        params['brightness'] = source.uniform(-brightness_delta, brightness_delta)
    contrast_first = bool(source.integers(0, 2))
    order = ['contrast', 'saturation', 'hue'] if contrast_first else \
        ['saturation', 'hue', 'contrast']
    ranges = {'contrast': contrast_range, 'saturation': saturation_range}
    for name in order:
        if source.uniform(0, 1) > 0.5:
            if name == 'hue':
                params['hue'] = source.aux_uniform(-hue_delta, hue_delta)
            else:
                params[name] = source.uniform(*ranges[name])
    return ColorJitter(contrast_first=contrast_first, **params)
