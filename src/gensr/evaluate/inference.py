"""Producing SR images for evaluation: the bicubic baseline and the trained generators (tiled).

Bicubic baseline = Pillow's BICUBIC upscale of the 8-bit LR to exactly the HR size, the same for
every row and set (on the standard LR_bicubic files it reproduces the literature's bicubic rows).
Generators run under `torch.inference_mode`, one image at a time; LR images larger than
`tile` x `tile` pixels are processed in overlapping tiles so memory stays bounded on any image.
Timings cover the upscaling only (no file I/O, no metrics), after one warm-up call per model.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gensr.evaluate import BadInputError, MissingInputError
from gensr.io import to_float, to_uint8


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """PIL BICUBIC upscale of the 8-bit LR by `scale` (HxWxC float in [0, 1] in and out)."""
    q = to_uint8(lr)
    grey = q.shape[2] == 1
    im = Image.fromarray(q[:, :, 0] if grey else q)
    up = np.asarray(im.resize((q.shape[1] * scale, q.shape[0] * scale), Image.BICUBIC))
    return to_float(up[:, :, None] if grey else up)


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


def _windows(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(core_start, core_end, padded_start, padded_end) covering [0, length)."""
    out = []
    for start in range(0, length, tile):
        end = min(start + tile, length)
        out.append((start, end, max(start - overlap, 0), min(end + overlap, length)))
    return out


def upscale(net: Any, lr: np.ndarray, scale: int, tile: int = 0, overlap: int = 16) -> np.ndarray:
    """Run the generator on one HxWxC LR image; tiled when it exceeds `tile` (0 = never)."""
    import torch

    device = next(iter(net.parameters())).device
    x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None].float().to(device)
    h, w = lr.shape[:2]
    with torch.inference_mode():
        if tile <= 0 or (h <= tile and w <= tile):
            sr = net(x)
        else:
            # Overlap hides the tile seams: each tile sees `overlap` LR pixels of context on every
            # side; only its core is kept. Even offsets keep stride-2 latents on the same grid.
            overlap += overlap % 2
            sr = torch.empty((1, x.shape[1], h * scale, w * scale), device=device)
            for y0, y1, py0, py1 in _windows(h, tile, overlap):
                for x0, x1, px0, px1 in _windows(w, tile, overlap):
                    part = net(x[:, :, py0:py1, px0:px1])
                    oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
                    sr[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = part[
                        :, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
                    ]
        if sr.shape[-2:] != (h * scale, w * scale):
            raise RuntimeError(f"generator returned {tuple(sr.shape)} for LR {h}x{w} at x{scale}")
        out = sr.clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
    return out


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
