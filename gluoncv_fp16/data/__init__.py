"""Datasets (VOC, COCO, custom VOC-layout folders, RecordIO, synthetic) and transforms."""
from .synthetic import SHAPE_CLASSES, ensure_synthetic, generate, render_sample
from .transforms import YOLO3FastTrainTransform, YOLO3FastValTransform

__all__ = ['SHAPE_CLASSES', 'ensure_synthetic', 'generate', 'render_sample',
           'YOLO3FastTrainTransform', 'YOLO3FastValTransform']
