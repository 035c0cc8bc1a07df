"""Exports of trained models to other runtimes (ONNX: :mod:`mtrs.export.onnx`)."""
