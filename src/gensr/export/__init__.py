"""Export stage: trained generators -> validated ONNX files (fp32, fp16, int8) registered in MLflow.

Modules (sessions, the metadata contract and the tiler live in the torch-free `gensr.infer`):

- `onnx_export`: torch.onnx dynamo export with dynamic batch/height/width and metadata;
- `validate`: parity against PyTorch eager, PSNR on the test split, speed;
- `lighten`: fp16 conversion and static int8 QDQ quantisation;
- `sampler`: the sampling graph of variational variants (noise as an input), its parity and quality;
- `registry`: MLflow logging, registration and the `champion` / `champion-perceptual` aliases;
- `stage`: the `export` DVC stage tying them together (`pipelines/export.py`).
"""
