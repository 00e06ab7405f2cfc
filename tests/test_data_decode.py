"""Decoding: libjpeg-turbo (simplejpeg) equals OpenCV's pixels; every other kind falls back."""
import cv2
import numpy as np
import pytest

from gluoncv_fp16.data import imageio
from gluoncv_fp16.data.imageio import BadSampleLog, decode_image

simplejpeg = pytest.importorskip('simplejpeg')


def opencv_rgb(buf):
    """Today's reference: OpenCV decode + the same repairs, without simplejpeg."""
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return imageio._to_rgb8(img, 'ref', BadSampleLog())  # pylint: disable=protected-access


def noisy(height, width, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)), (0, 0), 3)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('quality', [40, 95])
@pytest.mark.parametrize('sampling', ['444', '422', '420'])
def test_colour_jpeg_takes_libjpeg_turbo_with_identical_pixels(quality, sampling, monkeypatch):
    flag = getattr(cv2, 'IMWRITE_JPEG_SAMPLING_FACTOR_' + sampling)
    buf = cv2.imencode('.jpg', noisy(75, 101), [cv2.IMWRITE_JPEG_QUALITY, quality,
                                                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR, flag])[1]
    calls = []
    real = simplejpeg.decode_jpeg
    monkeypatch.setattr(simplejpeg, 'decode_jpeg', lambda *a, **k: calls.append(1) or
                        real(*a, **k))
    log = BadSampleLog()
    img = decode_image(buf, 'x.jpg', log)
    assert calls, 'a colour JPEG must be decoded by simplejpeg'
    assert img.dtype == np.uint8 and img.shape == (75, 101, 3)
    np.testing.assert_array_equal(img, opencv_rgb(buf))
    assert log.count == 0


def encode_kinds():
    """(name, encoded bytes, reason recorded) for the kinds the datasets repair."""
    rgb = noisy(40, 56, seed=1)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgba = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    deep = rgb.astype(np.uint16) * 257
    return [('gray.jpg', cv2.imencode('.jpg', gray)[1], 'grayscale converted'),
            ('gray.png', cv2.imencode('.png', gray)[1], 'grayscale converted'),
            ('rgba.png', cv2.imencode('.png', rgba)[1], 'alpha channel dropped'),
            ('deep.png', cv2.imencode('.png', deep)[1], '16-bit converted'),
            ('plain.png', cv2.imencode('.png', rgb)[1], None),
            ('plain.bmp', cv2.imencode('.bmp', rgb)[1], None)]


@pytest.mark.parametrize('name,buf,reason', encode_kinds(), ids=lambda v: str(v)[:12])
def test_other_kinds_fall_back_to_opencv_and_are_repaired(name, buf, reason):
    log = BadSampleLog()
    img = decode_image(buf, name, log)
    assert img.shape[2] == 3 and img.dtype == np.uint8
    np.testing.assert_array_equal(img, opencv_rgb(buf))
    # a conversion is noted, never counted as a bad sample, never refused when strict
    assert log.conversions() == ({reason: 1} if reason else {})
    assert log.counts() == {} and log.count == 0
    np.testing.assert_array_equal(decode_image(buf, name, BadSampleLog(strict=True)), img)


def test_truncated_and_garbage_are_skipped_and_recorded():
    buf = cv2.imencode('.jpg', noisy(64, 64))[1]
    log = BadSampleLog()
    assert decode_image(buf[:len(buf) // 2], 'cut.jpg', log) is None
    assert decode_image(np.frombuffer(b'\xff\xd8 not really a jpeg \xff\xd9', np.uint8),
                        'fake.jpg', log) is None
    assert decode_image(np.zeros(0, np.uint8), 'empty.jpg', log) is None
    assert log.counts() == {'truncated image': 1, 'unreadable image': 2}


def test_without_simplejpeg_opencv_decodes_the_same(monkeypatch):
    buf = cv2.imencode('.jpg', noisy(48, 64, seed=2))[1]
    fast = decode_image(buf, 'a.jpg', BadSampleLog())
    monkeypatch.setattr(imageio, 'simplejpeg', None)
    np.testing.assert_array_equal(decode_image(buf, 'a.jpg', BadSampleLog()), fast)


def test_loader_batches_are_the_same_with_either_decoder(synthetic_root, monkeypatch):
    from gluoncv_fp16.data.datasets import build_datasets
    from gluoncv_fp16.data.loader import make_train_loader
    from gluoncv_fp16.model_zoo import get_model
    net = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)
    net.initialize()
    train = build_datasets('custom', root=synthetic_root)[0]

    def batches():
        loader = make_train_loader(train, net, 4, 64, seed=8)
        return [[a.asnumpy() for a in batch] for batch in loader]
    fast = batches()
    monkeypatch.setattr(imageio, 'simplejpeg', None)
    for x, y in zip(fast, batches()):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
