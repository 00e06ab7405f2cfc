"""Offline, a request for pretrained weights fails with an error that says what to fetch.

GluonCV's own failure is a bare network error from deep inside its downloader. Ours
(PretrainedWeightsUnavailable) names the exact file GluonCV looks for and the folder to
put it in. GluonCV's download function is replaced by one that raises ConnectionError,
so these tests behave the same with or without internet access and never download.
"""
import os

import gluoncv.model_zoo.model_store as model_store
import pytest

from gluoncv_fp16.model_zoo import PretrainedWeightsUnavailable, get_model


@pytest.fixture
def offline(monkeypatch):
    """Make GluonCV's downloader fail as it does without a network; record the URLs."""
    urls = []

    def refuse(url, *args, **kwargs):
        urls.append(url)
        raise ConnectionError('no network (simulated by the test)')
    monkeypatch.setattr(model_store, 'download', refuse)
    monkeypatch.delenv('MXNET_HOME', raising=False)  # GluonCV would prefer it over root=
    return urls


@pytest.mark.parametrize('name, kwargs, expected_file', [
    ('yolo3_mobilenet1.0_voc', {'pretrained': True}, 'yolo3_mobilenet1.0_voc-3b47835a.params'),
    ('yolo3_mobilenet0.25_voc', {'pretrained_base': True}, 'mobilenet0.25-f0046a3d.params'),
    ('yolo3_darknet53_coco', {}, 'darknet53-2189ea49.params'),  # pretrained_base defaults on
    ('yolo3_mobilenet1.0_custom', {'classes': ['a'], 'transfer': 'voc'},
     'yolo3_mobilenet1.0_voc-3b47835a.params'),
])
def test_offline_error_names_the_file_and_the_folder(offline, tmp_path, name, kwargs,
                                                     expected_file):
    root = tmp_path / 'models'
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        get_model(name, root=str(root), **kwargs)
    message = str(info.value)
    assert expected_file in message and str(root) in message, message
    assert 'pretrained=False' in message  # the way out without any download
    assert isinstance(info.value.__cause__, ConnectionError)
    assert offline and expected_file[:-len('.params')] in offline[0], \
        'the error must come from GluonCV trying to download that very file'
    assert not list(root.glob('*.params')), 'nothing may be left behind as if downloaded'


def test_mxnet_home_is_the_folder_named(offline, tmp_path, monkeypatch):
    """GluonCV ignores root= when MXNET_HOME is set; the message must follow it."""
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'home'))
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        get_model('yolo3_mobilenet1.0_voc', pretrained=True, root=str(tmp_path / 'ignored'))
    assert os.path.join(str(tmp_path / 'home'), 'models') in str(info.value)


@pytest.mark.parametrize('kwargs', [
    {'pretrained': True},
    {'classes': ['a'], 'transfer': 'voc'},  # transfer= needs the _voc weights too
])
def test_names_without_published_weights_say_so(offline, tmp_path, kwargs):
    name = 'yolo3_mobilenet0.25_custom' if 'transfer' in kwargs else 'yolo3_mobilenet0.25_voc'
    with pytest.raises(PretrainedWeightsUnavailable,
                       match="publishes no pretrained weights for 'yolo3_mobilenet0.25_voc'"):
        get_model(name, root=str(tmp_path), **kwargs)
    assert not offline, 'no download should even be attempted'


def test_no_download_needed_builds_offline(offline, tmp_path):
    net = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False, root=str(tmp_path))
    assert len(net.classes) == 20 and not offline


def test_a_corrupt_cached_file_is_named_as_corrupt(offline, tmp_path):
    """GluonCV re-downloads a cached file with a wrong SHA-1; offline, say why."""
    cached = tmp_path / 'yolo3_mobilenet1.0_voc-3b47835a.params'
    cached.write_bytes(b'half a download')
    with pytest.raises(PretrainedWeightsUnavailable, match='fails its SHA-1 check') as info:
        get_model('yolo3_mobilenet1.0_voc', pretrained=True, root=str(tmp_path))
    assert cached.name in str(info.value) and 'delete it' in str(info.value)
