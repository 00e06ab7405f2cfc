"""GluonCV model names; the YOLOv3 ones return networks that survive cast('float16')."""
from .yolo3 import (CheckpointMismatchError, FP16SafeYOLOV3, FP16SafeYOLOOutputV3,
                    make_fp16_safe)
from .zoo import (YOLO3_MODELS, PretrainedWeightsUnavailable, build_untrained, get_model,
                  get_model_list)

__all__ = ['get_model', 'get_model_list', 'build_untrained', 'make_fp16_safe', 'FP16SafeYOLOV3',
           'FP16SafeYOLOOutputV3', 'CheckpointMismatchError', 'PretrainedWeightsUnavailable',
           'YOLO3_MODELS']
