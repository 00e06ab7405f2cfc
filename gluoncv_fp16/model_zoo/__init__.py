"""GluonCV model names; the YOLOv3 ones return networks that survive cast('float16')."""
from .yolo3 import (CheckpointError, FP16SafeYOLOV3, FP16SafeYOLOOutputV3,
                    make_fp16_safe)
from .zoo import (CLASS_SETS, DEFAULT_NETWORK, LIGHTEST_NETWORK, YOLO3_MODELS,
                  PretrainedWeightsUnavailable, backbone_weights_file, build_untrained,
                  dataset_classes, get_model, get_model_list, model_name, network_help,
                  network_names, network_problem, networks_with_weights,
                  pretrained_weights_file, register_network)

__all__ = ['get_model', 'get_model_list', 'build_untrained', 'make_fp16_safe', 'FP16SafeYOLOV3',
           'FP16SafeYOLOOutputV3', 'CheckpointError', 'PretrainedWeightsUnavailable',
           'YOLO3_MODELS', 'dataset_classes', 'pretrained_weights_file',
           'backbone_weights_file', 'register_network', 'network_names', 'network_problem',
           'network_help', 'networks_with_weights', 'model_name', 'CLASS_SETS',
           'DEFAULT_NETWORK', 'LIGHTEST_NETWORK']
