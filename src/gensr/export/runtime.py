"""onnxruntime sessions and the gensr ONNX metadata contract. Torch-free: the upscaler uses it.

Every exported file carries `metadata_props` (readable with
`session.get_modelmeta().custom_metadata_map`): `gensr.format` marks a gensr model, `scale` and
`channels` say how to feed it, the rest record where it came from (see `METADATA_KEYS`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

FORMAT = "gensr-onnx/1"
FORMAT_KEY = "gensr.format"
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
# What a consumer finds in metadata_props (besides gensr.format); documented in the README.
METADATA_KEYS = (
    "variant",  # training variant (ae, ae_res, gan, vae, ...)
    "scale",  # output = scale x input, both sides
    "channels",  # 3 = RGB, 1 = grayscale (BT.601 luma)
    "colour_space",  # "RGB" (sRGB-encoded, as stored in PNG/JPEG) or "grayscale"
    "value_range",  # "[0, 1]" float32 for input and output (output clamped in the graph)
    "layout",  # "NCHW"
    "precision",  # fp32 | fp16 (fp32 I/O) | int8 (QDQ, fp32 I/O)
    "mlflow_run_id",  # the training run
    "git_commit",  # code the model was trained with
    "manifest_hash",  # hash of the training data manifest
    "opset",
    "producer",
)


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads share one core's FPU: no SR speed-up)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        import psutil  # light, optional (installed with MLflow); not needed by the upscaler

        physical = psutil.cpu_count(logical=False) or usable
    except ImportError:
        physical = usable
    return max(1, min(physical, usable))


def cuda_driver_present() -> bool:
    """An NVIDIA driver on this machine (torch-free stand-in for torch.cuda.is_available())."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def choose_providers(use_cuda: bool | None = None) -> list[str]:
    """CUDA (with CPU fallback for unsupported ops) when usable, else CPU.

    `use_cuda=None` decides from the driver; the export stage passes torch.cuda.is_available().
    Only the *requested* list: what actually runs is `session.get_providers()`.
    """
    if use_cuda is None:
        use_cuda = cuda_driver_present()
    if use_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Tuned for one image at a time: all graph optimisations, intra-op threads = physical cores,
    sequential execution (SR graphs are chains: parallel branches would only add overhead)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: a missing CUDA library is reported, not every warning
    # The CPU arena keeps every block it ever allocated: with tiles of varying shapes it grew to
    # 14.6 GiB RSS upscaling to 4K (bench/speed.py c). Without it memory follows the current tile.
    opts.enable_cpu_mem_arena = False
    return opts


def make_session(
    model: str | os.PathLike | bytes, providers: list[str] | None = None, threads: int | None = None
) -> ort.InferenceSession:
    """An InferenceSession from a path or serialised bytes; ModelError for unusable files."""
    label = "<in-memory model>" if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes):
        path = Path(model)
        if not path.is_file():
            raise ModelError(path, "model file does not exist")
        if path.stat().st_size == 0:
            raise ModelError(path, "zero-byte model file")
        model = str(path)
    try:
        return ort.InferenceSession(model, session_options(threads), providers=providers or choose_providers())
    except Exception as e:  # ORT raises its own pybind exception types (InvalidProtobuf, Fail, ...)
        raise ModelError(label, f"not a loadable ONNX model ({type(e).__name__}: {e})") from e


def read_metadata(session: ort.InferenceSession, label: str = "model") -> dict[str, Any]:
    """The gensr metadata of a session, with `scale`/`channels` as ints, validated against the graph."""
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get(FORMAT_KEY) != FORMAT:
        found = meta.get(FORMAT_KEY, "none")
        raise ModelError(
            label,
            f"no gensr metadata ({FORMAT_KEY}={found!r}, expected {FORMAT!r}): export the model "
            "with `python pipelines/export.py` so it carries its scale and channels",
        )
    try:
        scale, channels = int(meta["scale"]), int(meta["channels"])
    except (KeyError, ValueError) as e:
        raise ModelError(label, f"gensr metadata lacks a valid scale/channels ({e})") from e
    if scale not in (2, 3, 4) or channels not in (1, 3):
        raise ModelError(label, f"unsupported metadata scale={scale}, channels={channels}")
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelError(label, f"expected one NCHW input, found {[(i.name, i.shape) for i in inputs]}")
    graph_channels = inputs[0].shape[1]
    if isinstance(graph_channels, int) and graph_channels != channels:
        raise ModelError(label, f"metadata says {channels} channels but the graph input has {graph_channels}")
    meta.update(scale=scale, channels=channels)
    return meta


def run(session: ort.InferenceSession, lr: np.ndarray) -> np.ndarray:
    """NCHW float32 in [0, 1] -> NCHW float32 SR."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(lr, dtype=np.float32)})[0]
