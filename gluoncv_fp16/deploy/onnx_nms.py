"""GluonCV's YOLOv3 post-processing as ONNX operators: topk, per-class NMS, post-NMS limit.

`mx.onnx` converts the network up to the per-class candidates, but its conversion of
``box_nms`` loses the per-class suppression and the topk (measured: 23-52 of MXNet's
100 detections survive). This module appends the same computation built from ONNX's
own operators to a graph whose outputs are the candidates
``ids (B, N, 1)``, ``scores (B, N, 1)``, ``boxes (B, N, 4)`` (FP32):

1. ``TopK`` keeps the `nms_topk` best-scoring candidates (box_nms' ``topk``);
2. ``NonMaxSuppression`` runs per class on them: each candidate's score is placed in
   its own class's row (others 0), so boxes of different classes never suppress each
   other (``force_suppress=False``); ``score_threshold`` is box_nms' ``valid_thresh``;
3. the kept candidates are ranked by score and the first `post_nms` are returned;
   rows without a detection are -1 in ids, scores and boxes, as MXNet pads them.

Outputs keep MXNet's shapes and dtypes: ``ids (B, R, 1)``, ``scores (B, R, 1)``,
``boxes (B, R, 4)``, FP32, with ``R = min(post_nms, N)``.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

__all__ = ['append_postprocessing', 'VALID_THRESH']

VALID_THRESH = 0.01  # GluonCV's YOLOV3 calls box_nms with valid_thresh=0.01


class _Builder:
    """Appends uniquely named nodes and constants to an ONNX graph."""

    def __init__(self, graph, prefix='postnms'):
        self.graph, self.prefix, self.count = graph, prefix, 0

    def name(self, hint):
        self.count += 1
        return '{}/{}_{}'.format(self.prefix, hint, self.count)

    def const(self, value, dtype):
        name = self.name('const')
        self.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=dtype),
                                                              name))
        return name

    def op(self, op_type, inputs, outputs=1, **attrs):
        names = [self.name(op_type.lower()) for _ in range(outputs)]
        self.graph.node.append(helper.make_node(op_type, list(inputs), names,
                                                name=self.name(op_type), **attrs))
        return names[0] if outputs == 1 else names

    def gather_rows(self, data, index):
        """data (B, N, ...) and index (B, M) int64 -> (B, M, ...)."""
        return self.op('GatherND', [data, self.op('Unsqueeze', [index, self.const([2],
                                                                            np.int64)])],
                       batch_dims=1)


def _limits(num_candidates, nms_topk, post_nms):
    """(candidates kept for NMS K, rows returned R), both as MXNet computes them."""
    k = num_candidates if nms_topk <= 0 else min(nms_topk, num_candidates)
    rows = num_candidates if post_nms <= 0 else min(post_nms, num_candidates)
    return k, rows


def append_postprocessing(graph, candidates, num_candidates, num_classes, nms_thresh=0.45,
                          nms_topk=400, post_nms=100, outputs=('ids', 'scores', 'boxes')):
    """Append GluonCV's NMS to `graph`, reading `candidates`, writing `outputs`.

    Parameters
    ----------
    graph : onnx.GraphProto
        Modified in place; its ``output`` list is replaced by the three `outputs`.
    candidates : tuple of str
        Names of the ids (B, N, 1), scores (B, N, 1) and boxes (B, N, 4) FP32 tensors.
    num_candidates : int
        N: per image, (sum over output layers of H * W) x 3 anchors x classes.
    num_classes : int
    nms_thresh, nms_topk, post_nms
        As ``YOLOV3.set_nms``; `nms_thresh` must be in (0, 1).
    """
    if not 0 < nms_thresh < 1:
        raise ValueError('nms_thresh must be in (0, 1) for an ONNX export, got {}'.format(
            nms_thresh))
    b = _Builder(graph)
    k, rows = _limits(num_candidates, nms_topk, post_nms)
    ids, scores, boxes = candidates
    scores = b.op('Squeeze', [scores, b.const([2], np.int64)])                      # (B, N)
    ids = b.op('Squeeze', [ids, b.const([2], np.int64)])                            # (B, N)
    top_scores, top_index = b.op('TopK', [scores, b.const([k], np.int64)], outputs=2, axis=1)
    top_ids = b.op('GatherElements', [ids, top_index], axis=1)                      # (B, K)
    top_boxes = b.gather_rows(boxes, top_index)                                     # (B, K, 4)
    # per-class scores (B, C, K): a candidate scores only in its own class's row
    one_hot = b.op('Equal', [
        b.op('Unsqueeze', [b.op('Cast', [top_ids], to=TensorProto.INT64),
                           b.const([1], np.int64)]),
        b.const(np.arange(num_classes).reshape(1, num_classes, 1), np.int64)])
    class_scores = b.op('Where', [one_hot, b.op('Unsqueeze', [top_scores,
                                                              b.const([1], np.int64)]),
                                  b.const(0.0, np.float32)])
    selected = b.op('NonMaxSuppression', [
        top_boxes, class_scores, b.const([k], np.int64), b.const([nms_thresh], np.float32),
        b.const([VALID_THRESH], np.float32)])                                       # (M, 3)
    # kept (B, K): 1 where NMS selected [batch, candidate]
    kept = b.op('ScatterND', [
        b.op('ConstantOfShape', [b.op('Shape', [top_scores])],
             value=helper.make_tensor('zero', TensorProto.FLOAT, [1], [0.0])),
        b.op('Gather', [selected, b.const([0, 2], np.int64)], axis=1),
        b.op('ConstantOfShape', [b.op('Slice', [b.op('Shape', [selected]),
                                                b.const([0], np.int64),
                                                b.const([1], np.int64)])],
             value=helper.make_tensor('one', TensorProto.FLOAT, [1], [1.0]))])
    is_kept = b.op('Greater', [kept, b.const(0.5, np.float32)])
    ranked = b.op('Where', [is_kept, top_scores, b.const(-1.0, np.float32)])
    final_scores, order = b.op('TopK', [ranked, b.const([min(rows, k)], np.int64)],
                               outputs=2, axis=1)                                   # (B, R)
    valid = b.op('Greater', [final_scores, b.const(-0.5, np.float32)])
    minus_one = b.const(-1.0, np.float32)
    final_ids = b.op('Where', [valid, b.op('GatherElements', [top_ids, order], axis=1),
                               minus_one])
    final_boxes = b.op('Where', [b.op('Unsqueeze', [valid, b.const([2], np.int64)]),
                                 b.gather_rows(top_boxes, order), minus_one])
    results = [b.op('Unsqueeze', [final_ids, b.const([2], np.int64)]),
               b.op('Unsqueeze', [final_scores, b.const([2], np.int64)]), final_boxes]
    if rows > k:  # MXNet pads up to post_nms rows with -1 when topk < post_nms
        pads = b.const([0, 0, 0, 0, rows - k, 0], np.int64)
        results = [b.op('Pad', [r, pads, minus_one]) for r in results]
    del graph.output[:]
    for result, name, width in zip(results, outputs, (1, 1, 4)):
        graph.node.append(helper.make_node('Identity', [result], [name], name=b.name(name)))
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                          ['batch', rows, width]))
    return graph
