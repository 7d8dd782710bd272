"""Inference, torch-free (numpy, Pillow, onnxruntime): what a production install runs.

- `session`: onnxruntime sessions, providers and the ONNX metadata contract;
- `tiling`: the feathered, phase-aligned tiler every SR image goes through (upscale, sample,
  export validation and evaluation, which passes its torch generator as the model callable).

Nothing here imports torch, Lightning, Hydra, MLflow or DVC (tests/test_install_core.py).
"""
