"""Inference, torch-free (numpy, Pillow, onnxruntime): what a production install runs.

- `session`: the one onnxruntime session builder (`make_session`), providers and the ONNX
  metadata contract;
- `tiling`: the feathered, phase-aligned tiler every SR image goes through (gensr upscale and
  sample, the export stage's tiling check, and evaluation, which passes its torch generator as
  the model callable);
- `files`: which files a batch reads and writes, and the output-safety checks;
- `batch`: one image file through an ONNX model (`SRModel`), and the batch loop;
- `sampling`: N seeded samples of an image from a sampling ONNX, and their std map;
- `arguments`: the command line `gensr upscale` and `gensr sample` share.

`gensr.upscale` and `gensr.sample` are thin command lines over these. Nothing here imports
torch, Lightning, Hydra, OmegaConf, MLflow, DVC, SciPy or scikit-image (tests/test_upscale.py,
tests/test_install_core.py).
"""
