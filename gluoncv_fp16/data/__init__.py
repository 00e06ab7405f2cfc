"""Datasets (VOC, COCO, custom VOC-layout folders, RecordIO, synthetic) and transforms."""
from .datasets import DATASETS, build_datasets
from .imageio import BadSampleError
from .loader import make_train_loader, make_val_loader
from .synthetic import SHAPE_CLASSES, ensure_synthetic, generate, render_sample
from .transforms import YOLO3FastTrainTransform, YOLO3FastValTransform

__all__ = ['SHAPE_CLASSES', 'ensure_synthetic', 'generate', 'render_sample',
           'YOLO3FastTrainTransform', 'YOLO3FastValTransform', 'build_datasets', 'DATASETS',
           'BadSampleError', 'make_train_loader', 'make_val_loader']
