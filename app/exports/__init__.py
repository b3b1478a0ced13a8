"""Exports of a trained model: ONNX, NumPy .npz and JSON files."""
