"""onnxruntime sessions and the gensr ONNX metadata contract. Torch-free: the upscaler uses it.

Every exported file carries `metadata_props` (readable with
`session.get_modelmeta().custom_metadata_map`): `gensr.format` marks a gensr model, `scale` and
`channels` say how to feed it, the rest record where it came from (see `METADATA_KEYS`).

Two kinds of graph: `sr` (input `lr` -> `sr`, deterministic; every variant) and `sampler` (inputs
`lr` and `noise` -> one `sr` sample; variational variants, `model.sample.onnx`). The sampler has
no RNG op: the caller supplies standard-normal `noise` of shape
[N, noise_channels, ceil(H / noise_stride), ceil(W / noise_stride)], so a sample is reproducible.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gensr.errors import UserError

FORMAT = "gensr-onnx/1"
FORMAT_KEY = "gensr.format"
INPUT_NAME, OUTPUT_NAME, NOISE_NAME = "lr", "sr", "noise"
KIND_SR, KIND_SAMPLER = "sr", "sampler"
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
    "kind",  # "sr" (deterministic; files without the key are "sr") | "sampler" (takes `noise`)
    # sampler only: noise_channels, noise_stride, noise_shape (the rule in words), noise_distribution
)


class ModelError(UserError, ValueError):
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


# What the CLIs' --provider choices ask for (None: decide from the driver, see choose_providers).
PROVIDER_CHOICES = {"auto": None, "cpu": ["CPUExecutionProvider"],
                    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


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
        if path.is_dir():
            raise ModelError(path, "is a folder, not an ONNX model file")
        if not path.is_file():
            raise ModelError(path, "not a regular file (a device or a pipe)" if path.exists()
                             else "model file does not exist")
        if path.stat().st_size == 0:
            raise ModelError(path, "zero-byte model file")
        model = str(path)
    try:
        return ort.InferenceSession(model, session_options(threads), providers=providers or choose_providers())
    except Exception as e:  # ORT raises its own pybind exception types (InvalidProtobuf, Fail, ...)
        raise ModelError(label, f"not a loadable ONNX model ({type(e).__name__}: {e})") from e


def read_metadata(session: ort.InferenceSession, label: str = "model", sampler: bool = False) -> dict[str, Any]:
    """The gensr metadata of a session, with `scale`/`channels` as ints, validated against the graph.

    `sampler` says which kind the caller can run: `gensr upscale` refuses a sampling model (its
    deterministic twin, model.onnx, is what to upscale with) and `gensr sample` refuses the others.
    """
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
    kind = meta.get("kind", KIND_SR)
    if kind == KIND_SAMPLER and not sampler:
        raise ModelError(label, f"a sampling model (inputs '{INPUT_NAME}' and '{NOISE_NAME}'): use it with "
                         "`gensr sample`, or upscale with the deterministic model.onnx exported beside it")
    if kind != KIND_SAMPLER and sampler:
        raise ModelError(label, f"not a sampling model (kind={kind!r}, no '{NOISE_NAME}' input): `gensr sample` "
                         "needs the model.sample.onnx that the export stage ships for variational variants")
    inputs = session.get_inputs()
    names = [INPUT_NAME, NOISE_NAME] if sampler else [INPUT_NAME]
    if [i.name for i in inputs] != names or any(len(i.shape) != 4 for i in inputs):
        raise ModelError(label, f"expected NCHW inputs {names}, found {[(i.name, i.shape) for i in inputs]}")
    if sampler:
        try:
            meta.update(noise_channels=int(meta["noise_channels"]), noise_stride=int(meta["noise_stride"]))
        except (KeyError, ValueError) as e:
            raise ModelError(label, f"sampling model metadata lacks a valid noise_channels/noise_stride ({e})") from e
        graph_noise = inputs[1].shape[1]
        if meta["noise_stride"] < 1 or (isinstance(graph_noise, int) and graph_noise != meta["noise_channels"]):
            raise ModelError(label, f"metadata noise_channels={meta['noise_channels']}, noise_stride="
                             f"{meta['noise_stride']} do not fit the graph's noise input {inputs[1].shape}")
    graph_channels = inputs[0].shape[1]
    if isinstance(graph_channels, int) and graph_channels != channels:
        raise ModelError(label, f"metadata says {channels} channels but the graph input has {graph_channels}")
    meta.update(scale=scale, channels=channels)
    return meta


def noise_shape(meta: dict[str, Any], n: int, h: int, w: int) -> tuple[int, int, int, int]:
    """The `noise` a sampling model (metadata from read_metadata) takes for an [n, C, h, w] input."""
    stride = meta["noise_stride"]
    return n, meta["noise_channels"], -(-h // stride), -(-w // stride)


def sample_noise(shape: tuple[int, ...], seed: int, index: int) -> np.ndarray:
    """Standard-normal float32 noise of sample `index` for `seed`: the same draw whatever else is
    sampled before it (one generator per (seed, index)), so sample k of an image is reproducible."""
    return np.random.default_rng([seed, index]).standard_normal(shape, dtype=np.float32)


def run(session: ort.InferenceSession, lr: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    """NCHW float32 in [0, 1] (and, for a sampler, its standard-normal noise) -> NCHW float32 SR."""
    feed = {INPUT_NAME: lr} if noise is None else {INPUT_NAME: lr, NOISE_NAME: noise}
    return session.run(None, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feed.items()})[0]
