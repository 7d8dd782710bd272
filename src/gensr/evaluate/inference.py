"""Producing SR images for evaluation: the bicubic baseline and the trained generators (tiled).

Bicubic baseline = `gensr.data.resize.bicubic_upscale` (MATLAB imresize bicubic of the 8-bit LR to
the HR size, the papers' protocol), the same for every row and set and for training's validation.
Generators run under `torch.inference_mode`, one image at a time, through the production tiler
(`gensr.infer.tiling.upscale_array`, what `gensr upscale` and the export stage's tiling check run):
an LR image inside `tile` x `tile` pixels goes through the generator whole and comes back
bit-identical to a plain forward pass; a larger one runs in overlapping, phase-aligned tiles
(origins on multiples of 8) feathered into one output, so memory stays bounded on any image and
the figures are those of the shipped tiling. Each tile's SR is clamped to [0, 1], as the
exported graph does, and so is the blend.
Timings cover the upscaling only (no file I/O, no metrics), after one warm-up call per model.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gensr.data.resize import bicubic_upscale
from gensr.errors import BadInputError, MissingInputError
from gensr.infer.tiling import check_tiling, upscale_array


@dataclass
class Variant:
    """A trained generator ready to run, with what the report and MLflow need about it."""

    name: str
    net: Any  # torch.nn.Module (torch imported lazily)
    meta: dict
    params: int
    run_id: str | None
    path: Path


def _run_id(meta: dict, metrics_file: Path) -> str | None:
    if meta.get("mlflow_run_id"):
        return str(meta["mlflow_run_id"])
    if metrics_file.is_file():
        try:
            rid = json.loads(metrics_file.read_text()).get("mlflow_run_id")
        except (json.JSONDecodeError, AttributeError) as e:
            raise BadInputError(f"{metrics_file}: not a JSON object ({e})") from e
        return str(rid) if rid else None
    return None


def load_variants(
    models_dir: Path, names: list[str], scale: int, channels: int, device: str
) -> list[Variant]:
    """Load every requested variant's model file; a missing one is an error naming the fix."""
    from gensr.checkpoint import load_model

    missing = [n for n in names if not (models_dir / n / "model.pt").is_file()]
    if missing:
        paths = ", ".join(str(models_dir / n / "model.pt") for n in missing)
        raise MissingInputError(
            f"no trained model for variant(s) {missing}: {paths} missing. Train them first "
            f"(`dvc repro train@{missing[0]}`) or drop them from `variants`."
        )
    out = []
    for name in names:
        path = models_dir / name / "model.pt"
        net, meta = load_model(path, variant=name, scale=scale, channels=channels)
        net = net.to(device)
        params = sum(p.numel() for p in net.parameters())
        out.append(Variant(name, net, meta, params, _run_id(meta, path.parent / "metrics.json"), path))
    return out


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"evaluate.device={device} but no CUDA device is available")
    return device


def _torch_model(net: Any):
    """The tiler's model callable for a torch generator: NCHW float32 numpy in, clamped SR out,
    run under inference_mode on the generator's device."""
    import torch

    device = next(iter(net.parameters())).device

    def run(lr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(lr).to(device)).clamp(0, 1).float().cpu().numpy()

    return run


def upscale(net: Any, lr: np.ndarray, scale: int, tile: int = 0, overlap: int = 16) -> np.ndarray:
    """Run the generator on one HxWxC LR image; tiled when it exceeds `tile` (0 = never)."""
    try:
        check_tiling(tile, overlap, ("evaluate.tile", "evaluate.tile_overlap"))
    except ValueError as e:
        raise BadInputError(str(e)) from None
    out = upscale_array(_torch_model(net), np.asarray(lr, np.float32), scale, tile, overlap)
    # Blending weights sum to 1 only within float rounding: 1 + 1e-7 where tiles overlap. In place.
    return np.clip(out, 0.0, 1.0, out=out)


def upscale_self_ensemble(net: Any, lr: np.ndarray, scale: int, tile: int = 0, overlap: int = 16) -> np.ndarray:
    """Geometric self-ensemble ("EDSR+"): the mean of the 8 flip/rot90 variants of the input, each
    mapped back. Costs 8 forward passes; gains ~0.1-0.2 dB on networks trained with the same
    augmentations. Reported separately from the single-pass figures, never mixed with them."""
    total = np.zeros((lr.shape[0] * scale, lr.shape[1] * scale, lr.shape[2]), np.float64)
    for k in range(8):
        x = np.rot90(lr[:, ::-1] if k & 4 else lr, k & 3)
        y = np.rot90(upscale(net, np.ascontiguousarray(x), scale, tile, overlap), -(k & 3))
        total += y[:, ::-1] if k & 4 else y
    return (total / 8).astype(np.float32)


def _sync(net: Any) -> None:
    import torch

    if next(iter(net.parameters())).device.type == "cuda":
        torch.cuda.synchronize()


def warm_up(net: Any, channels: int, scale: int) -> None:
    """One small call so lazy initialisation (kernels, allocator) is not billed to image 1."""
    upscale(net, np.zeros((16, 16, channels), np.float32), scale)
    _sync(net)


def timed_upscale(net: Any, lr: np.ndarray, scale: int, tile: int, overlap: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    sr = upscale(net, lr, scale, tile, overlap)
    _sync(net)
    return sr, time.perf_counter() - t0


def timed_bicubic(lr: np.ndarray, scale: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    sr = bicubic_upscale(lr, scale)
    return sr, time.perf_counter() - t0
