"""Deployment: export (MXNet symbol, ONNX), prediction, evaluation."""
