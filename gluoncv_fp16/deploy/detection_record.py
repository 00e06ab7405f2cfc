"""All detections of an evaluation run: COCO-format JSON and per-class PR curves.

The record keeps every detection and ground-truth box in the network input's pixels
(where the training-time mAP is measured), and each image's scale to its original
pixels, which the JSON uses. Curves and APs come from
:mod:`gluoncv_fp16.data.voc_map`, the VOC07 mAP training-time validation uses too.
"""
import json

from ..data.voc_map import class_ap, iou_plus_one, pr_curve, voc07_ap

__all__ = ['DetectionRecord', 'iou_plus_one', 'pr_curve', 'voc07_ap', 'plot_pr_curve']


class DetectionRecord:
    """Detections and ground truth of a dataset, image by image.

    Parameters
    ----------
    classes : list of str
    image_ids : callable, optional
        index -> image id for the JSON (COCO's own ids); default the index.
    category_ids : callable, optional
        class index -> category id for the JSON (COCO's own ids); default the index.
    """

    def __init__(self, classes, image_ids=None, category_ids=None):
        self.classes = list(classes)
        self._image_id = image_ids or int
        self._category_id = category_ids or int
        self.detections = []  # (image, class, score, x0, y0, x1, y1)
        self.truth = []        # (image, class, difficult, x0, y0, x1, y1)
        self.scales = {}       # image -> (sx, sy): input pixels to original pixels

    def add(self, index, ids, scores, boxes, label, scale=(1.0, 1.0)):
        """One image: detections (K,) / (K,) / (K, 4) and its label (N, 5+) in input
        pixels; `scale` (sx, sy) maps them to the original image. Rows with id < 0 (NMS
        padding, label padding) are ignored."""
        self.scales[index] = tuple(float(v) for v in scale)
        for cid, score, box in zip(ids, scores, boxes):
            if cid >= 0:
                self.detections.append((index, int(cid), float(score)) + tuple(map(float, box)))
        for row in label:
            if row[4] >= 0:
                difficult = bool(row[5]) if len(row) > 5 and row[5] > 0 else False
                self.truth.append((index, int(row[4]), difficult) + tuple(map(float, row[:4])))

    def image_id(self, index):
        """The id of image `index` in outputs (COCO's own id, else the index)."""
        return self._image_id(index)

    def coco_json(self, inclusive=False):
        """Detections as COCO result dicts (``bbox`` = [x, y, w, h]).

        `inclusive`: widths as ``x1 - x0 + 1`` (COCO annotations read with GluonCV's
        inclusive-end conversion, as our COCO reader does)."""
        extra = 1.0 if inclusive else 0.0
        results = []
        for i, c, s, x0, y0, x1, y1 in self.detections:
            sx, sy = self.scales[i]
            results.append({'image_id': self._image_id(i), 'category_id': self._category_id(c),
                            'score': round(s, 5),
                            'bbox': [round(x0 * sx, 2), round(y0 * sy, 2),
                                     round((x1 - x0) * sx + extra, 2),
                                     round((y1 - y0) * sy + extra, 2)]})
        return results

    def coco_ground_truth(self):
        """The record's ground truth as a COCO-format dict (original pixels, ids as in
        :meth:`coco_json`), for :func:`.evaluate.coco_metrics` with :meth:`coco_json`:
        COCO's metrics for any dataset, whatever its files were. Objects marked difficult
        become crowd regions, which COCO's evaluation neither counts as missed nor holds
        a detection on them against the model, as the VOC metric treats them."""
        annotations = []
        for i, c, difficult, x0, y0, x1, y1 in self.truth:
            sx, sy = self.scales[i]
            width, height = (x1 - x0) * sx, (y1 - y0) * sy
            annotations.append({'id': len(annotations) + 1, 'image_id': self._image_id(i),
                                'category_id': self._category_id(c),
                                'bbox': [x0 * sx, y0 * sy, width, height],
                                'area': width * height, 'iscrowd': int(difficult)})
        return {'images': [{'id': self._image_id(i)} for i in sorted(self.scales)],
                'annotations': annotations,
                'categories': [{'id': self._category_id(c), 'name': name}
                               for c, name in enumerate(self.classes)]}

    def write_json(self, path, inclusive=False):
        with open(path, 'w') as f:
            json.dump(self.coco_json(inclusive), f)
        return path

    def curve(self, class_index):
        """(recall, precision) arrays of one class, detections in descending score."""
        return class_ap(self.detections, self.truth, class_index)[1:]


def plot_pr_curve(path, curves, title):
    """One PNG: precision vs recall, a line per label (e.g. per dtype).

    curves : dict of label -> (recall, precision, ap)
    """
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for label, (recall, precision, ap) in curves.items():
        ax.plot(recall, precision, label='{} (AP {:.3f})'.format(label, ap), drawstyle='steps-post')
    ax.set(xlabel='recall', ylabel='precision', xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc='lower left', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
