"""Set5/Set14 (and any folder of HR images) scored with the shared benchmark protocol, for
bench/quality.py and bench/speed.py's deployment table alike: HR modcropped, LR = the standard
LR_bicubic files (an --eval folder without them gets the project's MATLAB bicubic of its HR),
PSNR/SSIM on Y with `scale` pixels shaved, hf = high-frequency energy relative to HR, texture
distance and GMSD (lower = closer to HR's detail; gensr.evaluate.texture).

What is scored is any upscaler `sr_of(lr) -> sr` (HxWxC float32 in [0, 1]): a trained torch model
file (`torch_upscaler`), the bicubic baseline (`bicubic_upscaler`), or an ONNX model through the
production tiler (bench/deploy_table.py).
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SETS = ("Set5", "Set14")
Upscaler = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ScoredSet:
    """A folder of HR images scored for the table; a benchmark (Set5/Set14) must have its standard
    LR_bicubic files beside it, an --eval folder gets the project's MATLAB bicubic when it has none."""

    name: str
    hr_dir: Path
    benchmark: bool = False


def scored_sets(benchmarks: Path, evals: list[str]) -> list[ScoredSet]:
    """Set5 and Set14 of --benchmarks, then each --eval NAME=FOLDER; a bad entry is an error."""
    sets = [ScoredSet(name, benchmarks / name / "HR", benchmark=True) for name in SETS]
    for entry in evals:
        name, sep, folder = entry.partition("=")
        name, path = name.strip(), Path(folder).expanduser().resolve()
        if not sep or not name or not folder:
            raise SystemExit(f"error: --eval {entry!r}: expected NAME=FOLDER")
        if any(s.name.lower() == name.lower() for s in sets):
            raise SystemExit(f"error: --eval {entry!r}: the name {name} is taken")
        if not path.is_dir():
            raise SystemExit(f"error: --eval {entry!r}: {path}: no such folder")
        sets.append(ScoredSet(name, path))
    return sets


def bicubic_upscaler(scale: int) -> Upscaler:
    """The project's one bicubic baseline (MATLAB imresize of the 8-bit LR)."""
    from gensr.data.resize import bicubic_upscale

    return lambda lr: bicubic_upscale(lr, scale)


def torch_upscaler(model, scale: int, ensemble: bool = False) -> Upscaler:
    """A trained model (a model file, or the net loaded from one) run as the evaluate stage runs it
    (x8 self-ensemble if asked)."""
    from gensr.checkpoint import load_model
    from gensr.evaluate.inference import upscale, upscale_self_ensemble

    net = load_model(model, scale=scale, channels=3)[0] if isinstance(model, (str, Path)) else model
    net = net.eval()
    return lambda lr: (upscale_self_ensemble if ensemble else upscale)(net, lr, scale)


def score(sr_of: Upscaler, sets: list[ScoredSet], scale: int, channels: int = 3) -> dict[str, dict[str, float]]:
    """{set: {psnr_y, ssim_y, hf_ratio, texture_distance, gmsd}}, each the mean over the set's images
    of `sr_of(lr)` (the evaluate stage's functions)."""
    from gensr.evaluate.sets import EvalSet, slug
    from gensr.evaluate.texture import gmsd, hf_ratio, texture_distance
    from gensr.metrics import psnr_y, ssim_y

    out = {}
    for s in sets:
        if not s.hr_dir.is_dir():
            raise FileNotFoundError(f"{s.hr_dir}: no such folder (--benchmarks should hold Set5/HR and Set14/HR)")
        rows = []
        for pair, lr_source in EvalSet(slug(s.name), s.hr_dir, "benchmark").pairs(scale, channels):
            if s.benchmark and lr_source != "LR_bicubic":
                raise FileNotFoundError(f"{s.hr_dir.parent}: no LR_bicubic/X{scale}/{pair.name}x{scale}.png")
            sr = sr_of(pair.lr)
            rows.append([f(sr, pair.hr, scale) for f in (psnr_y, ssim_y, hf_ratio, texture_distance, gmsd)])
        keys = ("psnr_y", "ssim_y", "hf_ratio", "texture_distance", "gmsd")
        out[s.name] = dict(zip(keys, (float(v) for v in np.mean(rows, axis=0))))
    return out
