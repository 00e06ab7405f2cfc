"""Deployment: export (MXNet symbol, ONNX) and prediction."""
