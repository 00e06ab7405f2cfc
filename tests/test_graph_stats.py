"""Memory and FLOPs read from the symbolic training graph (nothing is allocated)."""
import csv

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from gluoncv_fp16.bench import memory
from gluoncv_fp16.model_zoo import get_model
from gluoncv_fp16.utils import graph_stats

PUBLISHED_YOLO3_416_FLOPS = 65.9e9  # darknet's count for yolov3.cfg (80 classes) at 416


def build(name):
    """Uninitialised, as graph_stats requires."""
    return get_model(name, pretrained_base=False)


def test_darknet53_coco_416_forward_flops_match_the_published_figure():
    stats = graph_stats.step_stats(build('yolo3_darknet53_coco'), 'float32', 1, 416, 416)
    assert stats.forward_flops == pytest.approx(PUBLISHED_YOLO3_416_FLOPS, rel=0.02)


def test_flops_scale_with_image_area_and_batch():
    small = graph_stats.step_stats(build('yolo3_mobilenet0.25_voc'), 'float32', 1, 320, 320)
    large = graph_stats.step_stats(build('yolo3_mobilenet0.25_voc'), 'float32', 2, 608, 608)
    # Fully convolutional, sides multiples of the largest stride: exact proportionality.
    assert large.forward_flops * 320 * 320 == small.forward_flops * 2 * 608 * 608


def test_every_convolution_of_the_net_is_traced_once():
    net = get_model('yolo3_darknet53_voc', pretrained_base=False)
    convs = []
    net.apply(lambda block: convs.append(block) if isinstance(block, nn.Conv2D) else None)
    traced = graph_stats.trace_training_graph(net, 1, 64, 64)
    traced_convs = [n for n in traced.nodes if n['op'] == 'Convolution']
    assert len(traced_convs) == len(convs)
    op_names = [n['name'] for n in traced.nodes if n['op'] != 'null']
    assert len(set(op_names)) == len(op_names), 'repeated block calls must be renamed'


def test_activations_grow_by_the_same_amount_per_image():
    # Per-image tensors scale with the batch; a few (anchor offsets, loss means) do not.
    one, two, three = [
        graph_stats.step_stats(build('yolo3_mobilenet0.25_voc'), 'float16', b, 64, 64)
        for b in (1, 2, 3)]
    assert three.activation_bytes - two.activation_bytes == \
        two.activation_bytes - one.activation_bytes > 0.9 * one.activation_bytes
    assert three.gradient_bytes == one.gradient_bytes


def _param_bytes_by_rule(name):
    """Gradient bytes computed independently: initialise, run, and apply the FP16 rule."""
    net = get_model(name, pretrained_base=False)
    net.initialize()
    net(mx.nd.zeros((1, 3, 64, 64)))
    fp32 = fp16 = 0
    for pname, param in net.collect_params().items():
        if param.grad_req == 'null':
            continue
        size = int(np.prod(param.shape))
        fp32 += 4 * size
        # BatchNorm gamma/beta stay FP32 under cast('float16'); everything else halves.
        fp16 += (4 if pname.endswith(('_gamma', '_beta')) else 2) * size
    return fp32, fp16


def test_gradient_bytes_follow_the_real_parameter_dtypes():
    name = 'yolo3_mobilenet0.25_voc'
    expected_fp32, expected_fp16 = _param_bytes_by_rule(name)
    for dtype, expected in (('float32', expected_fp32), ('float16', expected_fp16)):
        assert graph_stats.step_stats(build(name), dtype, 1, 64, 64).gradient_bytes == expected


def test_one_net_can_be_compared_at_several_sizes():
    net = build('yolo3_mobilenet0.25_voc')
    graph_stats.compare_precisions(net, 64)
    # MXNet caches each parameter's symbol at the first trace; a second comparison of
    # the same net must still see FP16 weights in its FP16 graph.
    assert graph_stats.compare_precisions(net, 128) == \
        graph_stats.compare_precisions(build('yolo3_mobilenet0.25_voc'), 128)
    assert np.dtype(net.yolo_outputs[0].prediction.weight.dtype) == np.float32


def test_refuses_an_initialised_net():
    net = build('yolo3_mobilenet0.25_voc')
    net.initialize()
    with pytest.raises(ValueError, match='uninitialised'):
        graph_stats.step_stats(net, 'float16', 1, 64, 64)


def test_fp16_does_not_halve_everything():
    full = graph_stats.step_stats(build('yolo3_mobilenet0.25_voc'), 'float32', 1, 128, 128)
    half = graph_stats.step_stats(build('yolo3_mobilenet0.25_voc'), 'float16', 1, 128, 128)
    assert set(full.activation_bytes_by_dtype) <= {'float32', 'int64', 'int32'}
    assert half.activation_bytes_by_dtype['float16'] > 0
    assert half.forward_flops == full.forward_flops
    # Decode, targets and loss stay FP32, so FP16 saves less than half.
    assert half.activation_bytes_by_dtype['float32'] > 0
    assert full.activation_bytes / 2 < half.activation_bytes < full.activation_bytes


def test_fp16_trace_of_an_uninitialised_net_has_no_cpu_widening_casts():
    net = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)
    net.cast('float16')
    traced = graph_stats.trace_training_graph(net, 1, 64, 64, 'float16')
    nodes = traced.nodes
    conv_inputs = [nodes[entry[0]]['op'] for n in nodes if n['op'] == 'Convolution'
                   for entry in n['inputs']]
    assert 'Cast' not in conv_inputs


@pytest.mark.parametrize('bad', [(1, 100, 96), (0, 64, 64)])
def test_bad_input_sizes_are_rejected_with_the_reason(bad):
    net = get_model('yolo3_mobilenet0.25_voc', pretrained_base=False)
    with pytest.raises(ValueError, match='multiples of 32|positive int'):
        graph_stats.trace_training_graph(net, *bad)


def test_script_prints_markdown_and_writes_csv(tmp_path, capsys):
    out = tmp_path / 'mem.csv'
    script = memory
    assert script.main(['--networks', 'yolo3_mobilenet0.25_voc', '--data-shapes', '64,128',
                        '--csv', str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith('| network | shape |') and len(printed) == 4
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [int(r['data_shape']) for r in rows] == [64, 128]
    assert all(0.5 < float(r['ratio']) < 1 for r in rows)


@pytest.mark.parametrize('argv', [['--data-shapes', '100'], ['--networks', 'yolo3_foo_voc'],
                                  ['--data-shapes', 'abc']])
def test_script_rejects_bad_arguments_with_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        memory.main(argv)
    assert exit_info.value.code == 2
    assert 'error:' in capsys.readouterr().err
