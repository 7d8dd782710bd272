"""gensr: generative image super-resolution, from photos to validated ONNX models."""
__version__ = "0.1.0"
