"""Activation memory, gradient memory and FLOPs of a training step, read from the graph.

Why from the graph: the question "how much does FP16 save?" is usually answered with
"half", but a YOLOv3 cast to float16 keeps BatchNorm parameters, the prediction outputs,
the decode, the target generator and the loss in FP32. The honest number comes from the
dtypes MXNet itself infers for every node of the training graph, which is what this
module reads. Nothing is allocated or run: the network is traced symbolically under
``autograd.record()`` and the shapes and dtypes come from ``infer_shape`` / ``infer_type``.

The net is traced without ever being initialised, so no parameter has a CPU context and
:mod:`gluoncv_fp16.precision.cpu_half` adds no FP32-widening casts: the graph measured is
the one a GPU runs.

What is counted (per training step, for the given batch size):

activations
    Every output of every operator whose value depends on the input image -- what the
    backward pass may need -- in its inferred dtype. Operators that MXNet runs as views
    of their input (reshape, expand_dims, BlockGrad, ...) add no memory and are skipped.
    Nodes that only process targets or constants are not activations and are skipped.
    This is an upper bound: MXNet's memory planner frees or reuses some of these buffers.
gradients
    One gradient per trainable parameter (``grad_req != 'null'``), in the parameter's
    dtype: FP16 for convolution weights of an FP16 net, FP32 for BatchNorm gamma/beta.
forward FLOPs
    Convolution ``2*K*K*Cin/groups*Cout*Hout*Wout`` and FullyConnected ``2*In*Out``
    (a multiply-add counts as 2), per batch; bias, BatchNorm and elementwise ops are not
    counted, the same convention as the published 65.9 GFLOP for YOLOv3-416 (darknet's
    count for the 80-class COCO model).
"""
import json
import logging
import re

import mxnet as mx
import numpy as np
from mxnet import autograd

__all__ = ['train_flops_per_image', 'TracedGraph', 'StepStats', 'trace_training_graph', 'activation_bytes_by_dtype',
           'gradient_bytes', 'forward_flops', 'step_stats', 'compare_precisions', 'VIEW_OPS']

logger = logging.getLogger(__name__)

TARGET_NAMES = ('gt_boxes', 'obj_t', 'centers_t', 'scales_t', 'weights_t', 'clas_t')

# Operators MXNet executes in place / as a view of their input (FInplaceIdentity):
# their outputs share the input's memory, so they add nothing to the step's footprint.
VIEW_OPS = frozenset(('Reshape', 'reshape', 'Flatten', 'flatten', 'expand_dims', 'squeeze',
                      'reshape_like', 'BlockGrad', 'stop_gradient', 'identity', '_copy'))

_FLOP_OPS = ('Convolution', 'FullyConnected')
_OUTPUT_SUFFIX = re.compile(r'_output\d*$')


class TracedGraph:
    """A symbolic training graph with the shape and dtype of every node output.

    Attributes
    ----------
    symbol : mx.sym.Symbol
        The grouped losses of the training graph.
    nodes : list of dict
        The graph's nodes in topological order (MXNet's JSON form: ``op``, ``name``,
        ``inputs`` as ``[node_index, output_index, version]``, ``attrs``).
    shapes, dtypes : dict of str -> tuple / numpy.dtype
        By internal output name (``<node>_output[i]``) and by argument name.
    outputs_of : dict of str -> list of str
        Node name -> the names of its visible outputs.
    """

    def __init__(self, symbol, nodes, shapes, dtypes, outputs_of):
        self.symbol = symbol
        self.nodes = nodes
        self.shapes = shapes
        self.dtypes = dtypes
        self.outputs_of = outputs_of

    def nbytes(self, name):
        """Bytes of one named output or argument."""
        return int(np.prod(self.shapes[name], dtype=np.int64)) * self.dtypes[name].itemsize


class StepStats:
    """Memory and FLOPs of one training step of one network in one precision.

    Attributes
    ----------
    activation_bytes : int
    activation_bytes_by_dtype : dict of str -> int
        E.g. ``{'float16': ..., 'float32': ...}``: what stays FP32 in an FP16 net.
    gradient_bytes : int
    forward_flops : int
    """

    def __init__(self, activation_bytes_by_dtype, gradient_bytes, forward_flops):
        self.activation_bytes_by_dtype = dict(activation_bytes_by_dtype)
        self.activation_bytes = sum(self.activation_bytes_by_dtype.values())
        self.gradient_bytes = gradient_bytes
        self.forward_flops = forward_flops

    @property
    def total_bytes(self):
        return self.activation_bytes + self.gradient_bytes


def _check_input(batch_size, height, width):
    for label, value in (('batch_size', batch_size), ('height', height), ('width', width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError("{} must be a positive int, got {!r}".format(label, value))
    if height % 32 or width % 32:
        raise ValueError("YOLOv3 input sides must be multiples of 32 (its largest stride), "
                         "got {}x{}; use e.g. 320, 416 or 608".format(height, width))


def _target_shapes(net, data_shape):
    """Shapes of the six training targets for `data_shape`, from the net's raw outputs.

    The number of anchor positions depends on the net's strides and anchors; the
    train-mode (not recording) forward returns the concatenated objectness
    ``(B, N, 1)`` and class predictions ``(B, N, C)``, whose shapes give it.
    """
    with autograd.train_mode():
        raw = net(mx.sym.var('data'))
    _, (obj, cls), _ = mx.sym.Group([raw[6], raw[7]]).infer_shape(data=data_shape)
    batch, num, _ = obj
    return dict(gt_boxes=(batch, 1, 4), obj_t=(batch, num, 1), centers_t=(batch, num, 2),
                scales_t=(batch, num, 2), weights_t=(batch, num, 2),
                clas_t=(batch, num, cls[2]))


def trace_training_graph(net, batch_size=1, height=416, width=416, dtype='float32'):
    """Trace `net`'s training graph (losses) symbolically and infer every shape and dtype.

    Parameters
    ----------
    net : FP16SafeYOLOV3
        Already cast to `dtype` if that is float16. Should be uninitialised (see the
        module docstring): an initialised FP16 net on CPU would be traced with the CPU
        widening casts, which a GPU does not run.
    batch_size, height, width : int
        Input is ``(batch_size, 3, height, width)`` of `dtype`; sides multiples of 32.
    dtype : str
        The input image dtype; targets are always FP32.

    Returns
    -------
    TracedGraph
    """
    _check_input(batch_size, height, width)
    data_shape = (batch_size, 3, height, width)
    shapes_in = dict(_target_shapes(net, data_shape), data=data_shape)
    with autograd.record():
        losses = net(mx.sym.var('data'), *[mx.sym.var(n) for n in TARGET_NAMES])
    graph = _uniquely_named(mx.sym.Group(list(losses)))
    internals = graph.get_internals()
    types_in = dict(_param_dtypes(net, graph), **{n: 'float32' for n in TARGET_NAMES})
    types_in['data'] = dtype
    _, out_shapes, _ = internals.infer_shape(**shapes_in)
    _, out_types, _ = internals.infer_type(**types_in)
    names = internals.list_outputs()
    outputs_of = {}
    for name in names:
        if _OUTPUT_SUFFIX.search(name):
            outputs_of.setdefault(_OUTPUT_SUFFIX.sub('', name), []).append(name)
    return TracedGraph(graph, json.loads(graph.tojson())['nodes'],
                       dict(zip(names, (tuple(s) for s in out_shapes))),
                       dict(zip(names, (np.dtype(t) for t in out_types))), outputs_of)


def _param_dtypes(net, graph):
    """The current dtype of every parameter the graph takes as an argument.

    Passed to ``infer_type`` explicitly because MXNet caches each parameter's symbol
    (with its dtype) at the first trace: a net traced in FP32, then cast to FP16, would
    otherwise be inferred with stale FP32 weights.
    """
    args = set(graph.list_arguments())
    return {p.name: np.dtype(p.dtype).name for p in net.collect_params().values()
            if p.name in args}


def _uniquely_named(graph):
    """`graph` with every operator node renamed ``<name>__<index>``.

    A block called more than once (YOLOv3's loss calls one SigmoidBCELoss for several
    terms) gives several nodes the same name, with different shapes; shapes and dtypes
    are looked up by output name, so the names must be unique. Variables (parameters
    and inputs) are unique already and keep their names.
    """
    spec = json.loads(graph.tojson())
    for index, node in enumerate(spec['nodes']):
        if node['op'] != 'null':
            node['name'] = '{}__{}'.format(node['name'], index)
    return mx.sym.load_json(json.dumps(spec))


def _data_dependent(nodes):
    """Indices of the nodes whose value depends on the 'data' input."""
    depends = set()
    for index, node in enumerate(nodes):
        if node['op'] == 'null':
            if node['name'] == 'data':
                depends.add(index)
        elif any(entry[0] in depends for entry in node['inputs']):
            depends.add(index)
    return depends


def activation_bytes_by_dtype(traced):
    """Bytes of the activations (see module docstring) by dtype name."""
    totals = {}
    for index in _data_dependent(traced.nodes):
        node = traced.nodes[index]
        if node['op'] == 'null' or node['op'] in VIEW_OPS:
            continue
        for name in traced.outputs_of.get(node['name'], ()):
            key = traced.dtypes[name].name
            totals[key] = totals.get(key, 0) + traced.nbytes(name)
    return totals


def gradient_bytes(net, traced):
    """Bytes of the gradients of `net`'s trainable parameters used by the graph."""
    return sum(traced.nbytes(p.name) for p in net.collect_params().values()
               if p.grad_req != 'null' and p.name in traced.shapes)


def forward_flops(traced):
    """Forward FLOPs of the Convolution and FullyConnected nodes (multiply-add = 2)."""
    total = 0
    for node in traced.nodes:
        if node['op'] not in _FLOP_OPS:
            continue
        weight = traced.shapes[traced.nodes[node['inputs'][1][0]]['name']]
        out = traced.shapes[traced.outputs_of[node['name']][0]]
        # Each output element of each filter costs prod(weight[1:]) multiply-adds.
        per_filter_outputs = int(np.prod(out, dtype=np.int64)) // weight[0]
        total += 2 * int(np.prod(weight, dtype=np.int64)) * per_filter_outputs
    return total


def _require_uninitialised(net):
    """Refuse an initialised net: on a CPU its FP16 trace would hold the shim's casts."""
    for param in net.collect_params().values():
        try:
            param.list_ctx()
        except RuntimeError:  # not initialised: what we want
            continue
        raise ValueError(
            "graph_stats needs an uninitialised network (get_model(name, "
            "pretrained_base=False) without initialize()); '{}' is initialised, and an "
            "initialised FP16 net on a CPU would be measured with the CPU shim's "
            "FP32-widening casts, which a GPU does not run".format(param.name))


def step_stats(net, dtype='float32', batch_size=1, height=416, width=416):
    """Cast the uninitialised `net` to `dtype` and measure one training step.

    Parameters
    ----------
    net : FP16SafeYOLOV3
        Uninitialised (e.g. ``get_model(name, pretrained_base=False)``); it is left
        cast to `dtype`.
    dtype : {'float32', 'float16'}
    batch_size, height, width : int

    Returns
    -------
    StepStats

    Raises
    ------
    ValueError
        Initialised `net`, another dtype, or sides that are not multiples of 32.
    """
    if np.dtype(dtype) not in (np.float32, np.float16):
        raise ValueError("dtype must be 'float32' or 'float16', got {!r}".format(dtype))
    _require_uninitialised(net)
    net.cast(np.dtype(dtype).name)
    traced = trace_training_graph(net, batch_size, height, width, np.dtype(dtype).name)
    stats = StepStats(activation_bytes_by_dtype(traced), gradient_bytes(net, traced),
                      forward_flops(traced))
    logger.debug("%s %dx%d %s: %.1f MiB activations, %.1f MiB gradients", net.name, height,
                 width, dtype, stats.activation_bytes / 2**20, stats.gradient_bytes / 2**20)
    return stats


def compare_precisions(net, data_shape=416, batch_size=1):
    """One row comparing FP32 and FP16 training-step memory of `net` at `data_shape`.

    `net` must be uninitialised (see :func:`step_stats`); it is left in FP32.

    Returns
    -------
    dict
        ``data_shape, batch_size``, ``{act,grad,total}_{fp32,fp16}_mib``,
        ``fp16_act_fp32_share`` (fraction of FP16-net activation bytes still FP32),
        ``ratio`` (FP16 total / FP32 total) and ``gflops`` (forward).
    """
    full = step_stats(net, 'float32', batch_size, data_shape, data_shape)
    try:
        half = step_stats(net, 'float16', batch_size, data_shape, data_shape)
    finally:
        net.cast('float32')
    mib = 2.0 ** 20
    row = dict(data_shape=data_shape, batch_size=batch_size)
    for tag, stats in (('fp32', full), ('fp16', half)):
        row['act_{}_mib'.format(tag)] = stats.activation_bytes / mib
        row['grad_{}_mib'.format(tag)] = stats.gradient_bytes / mib
        row['total_{}_mib'.format(tag)] = stats.total_bytes / mib
    row['fp16_act_fp32_share'] = (half.activation_bytes_by_dtype.get('float32', 0) /
                                  half.activation_bytes)
    row['ratio'] = half.total_bytes / full.total_bytes
    row['gflops'] = full.forward_flops / 1e9
    return row


def train_flops_per_image(net, data_shape):
    """Training FLOPs per image of an uninitialised `net`: the graph's forward FLOPs x3
    (forward + two backward GEMMs per layer)."""
    return 3.0 * forward_flops(trace_training_graph(net, 1, data_shape, data_shape))
