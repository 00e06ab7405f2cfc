"""gluoncv_fp16: FP16 training for GluonCV's YOLOv3.

MXNet is an extra because its CPU and CUDA builds are different packages:
``pip install -e .[cpu]`` or ``pip install -e .[cu112]``.
"""
from setuptools import find_packages, setup

# Pins measured to install and import together on Python 3.11 (see DESIGN.md): unpinned,
# pip pulls numpy 2 / opencv 5 and `import mxnet` fails.
INSTALL_REQUIRES = [
    'gluoncv==0.10.5.post0',
    'numpy<1.24',
    'opencv-python<4.9',
    'matplotlib<3.9',
    'pandas<2.1',
    'scipy<1.12',
    'pycocotools',
    'tqdm',
    'pyyaml',  # --dataset yolo reads Ultralytics' data.yaml
    # libjpeg-turbo JPEG decode, pixel-identical to OpenCV's; 1.9.0 has cp311 wheels and
    # runs with numpy 1.23 (measured). Without it, OpenCV decodes everything.
    'simplejpeg==1.9.0',
]

# onnx for mx.onnx, and onnxruntime 1.17.3's own dependencies (see extras below)
ONNX_REQUIRES = ['onnx==1.15.0', 'coloredlogs', 'flatbuffers', 'packaging', 'protobuf',
                 'sympy']

with open('README.md', encoding='utf-8') as f:
    LONG_DESCRIPTION = f.read()

setup(
    name='gluoncv_fp16',
    version='0.1.0',
    description="Half-precision (FP16) training for GluonCV's YOLOv3",
    long_description=LONG_DESCRIPTION,
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluoncv_fp16', 'gluoncv_fp16.*']),
    python_requires='>=3.8',
    install_requires=INSTALL_REQUIRES,
    # one command per module of gluoncv_fp16/cli (train_yolo3.py and scripts/*.py are
    # shims of the same functions)
    entry_points={'console_scripts': [
        'gluoncv-fp16-train = gluoncv_fp16.cli.train:main',
        'gluoncv-fp16-eval = gluoncv_fp16.cli.eval:main',
        'gluoncv-fp16-export = gluoncv_fp16.cli.export:main',
        'gluoncv-fp16-demo = gluoncv_fp16.cli.demo:main',
        'gluoncv-fp16-check = gluoncv_fp16.cli.check:main',
        'gluoncv-fp16-data = gluoncv_fp16.cli.data:main',
    ]},
    extras_require={
        'cpu': ['mxnet==1.9.1'],
        'cu112': ['mxnet-cu112==1.9.1'],
        'tensorboard': ['tensorboardX>=2.6,<2.7'],
        # onnxruntime itself: `pip install --no-deps onnxruntime==1.17.3`. Every cp311
        # onnxruntime wheel declares numpy>=1.24.2, which conflicts with numpy<1.24 above
        # (gluoncv 0.10.5's COCO metric uses np.float); 1.17.3 runs with numpy 1.23.5
        # (tests/test_onnx_export.py). onnx 1.16+ breaks mx.onnx ('mapping' removed).
        'onnx': ONNX_REQUIRES,
        # tensorboard: its event reader checks that our event files are readable;
        # ruff: the linter CI runs (`ruff check .`, configured in pyproject.toml)
        'test': ['pytest', 'tensorboardX>=2.6,<2.7', 'tensorboard',
                 'ruff==0.17.6'] + ONNX_REQUIRES,
    },
)
