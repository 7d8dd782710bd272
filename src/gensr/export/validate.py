"""Proof that an ONNX file computes what the PyTorch generator computes, plus what it costs.

- parity: ORT vs torch eager on the same float32 inputs (random at odd/non-square shapes, batch 1
  and 2, and the real test images): max |diff| and PSNR(ORT, torch) with peak 1.0;
- quality: mean PSNR-Y against HR on the test split (`gensr.metrics.psnr_y`, border = scale),
  the baseline from which the fp16/int8 drops are measured;
- speed: median latency and output megapixels/s after warm-up, ORT and torch on the same input.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from gensr.data.pairs import Pair
from gensr.infer import session as runtime
from gensr.metrics import psnr, psnr_y

Array = np.ndarray


def torch_runner(model: nn.Module) -> Callable[..., Array]:
    """run(lr) -> sr; run(lr, noise) -> sr for a sampling graph (onnx_export.SampledSR)."""

    def run(*xs: Array) -> Array:
        with torch.inference_mode():
            return model(*(torch.from_numpy(np.ascontiguousarray(x)) for x in xs)).numpy()

    return run


def ort_runner(session: ort.InferenceSession) -> Callable[..., Array]:
    return lambda *xs: runtime.run(session, *xs)


def file_info(blob: bytes) -> dict[str, Any]:
    """What validation.json records of a shipped file: size and sha256 (the bytes written)."""
    return {"size_bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def finite(x: float, ndigits: int = 4) -> float | None:
    """JSON-safe figure: identical outputs give PSNR = inf, recorded as null (and passing)."""
    return round(x, ndigits) if math.isfinite(x) else None


def random_inputs(shapes: Iterable[Iterable[int]], batches: Iterable[int], channels: int, seed: int) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    out = {}
    for h, w in shapes:
        for n in batches:
            out[f"random_b{n}_{h}x{w}"] = rng.random((n, channels, h, w), dtype=np.float32)
    return out


def to_nchw(img: Array) -> Array:
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)


def to_hwc(batch: Array) -> Array:
    return batch[0].transpose(1, 2, 0)


def compare(reference: Array, candidate: Array) -> tuple[float, float]:
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: torch {reference.shape} vs ORT {candidate.shape}")
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    return diff, psnr(reference, candidate, peak=1.0)


def outputs(
    run: Callable[..., Array], inputs: dict[str, Array], noise: dict[str, Array] | None = None
) -> dict[str, Array]:
    """`run` on each input (with its `noise[name]` too, for a sampling graph)."""
    return {name: run(x) if noise is None else run(x, noise[name]) for name, x in inputs.items()}


def parity(
    inputs: dict[str, Array],
    reference: dict[str, Array],
    candidate: dict[str, Array],
    max_abs_diff: float,
    min_psnr_db: float,
) -> dict[str, Any]:
    """Every case with its figures; `failures` lists 'case: shape, diff' for the ones out of bounds."""
    cases, failures = {}, []
    worst_diff, worst_psnr = 0.0, math.inf
    for name, x in inputs.items():
        diff, p = compare(reference[name], candidate[name])
        ok = bool(diff <= max_abs_diff and p >= min_psnr_db)
        cases[name] = {"shape": list(x.shape), "max_abs_diff": diff, "psnr_db": finite(p, 2), "passed": ok}
        worst_diff, worst_psnr = max(worst_diff, diff), min(worst_psnr, p)
        if not ok:
            failures.append(
                f"{name}: input {list(x.shape)}, max |ORT - torch| = {diff:.3g} (limit {max_abs_diff:g}), "
                f"PSNR {p:.2f} dB (limit {min_psnr_db:g})"
            )
    return {
        "passed": not failures,
        "max_abs_diff": worst_diff,
        "min_psnr_db": finite(worst_psnr, 2),
        "cases": cases,
        "failures": failures,
    }


def split_inputs(pairs: list[Pair]) -> dict[str, Array]:
    """The test split's LR images as batch-1 NCHW inputs, keyed `test_<name>`."""
    return {f"test_{name}": to_nchw(lr) for name, lr, _ in pairs}


def split_psnr_y(sr: dict[str, Array], pairs: list[Pair], scale: int) -> float:
    """Mean PSNR-Y (dB) of the SR outputs (keyed as `split_inputs`) against HR, `scale` pixels
    shaved (the papers' protocol)."""
    return float(np.mean([psnr_y(to_hwc(sr[f"test_{name}"]), hr, border=scale) for name, _, hr in pairs]))


def benchmark(run: Callable[[Array], Array], x: Array, scale: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median wall latency of `run(x)` after `warmup` calls; output megapixels per second."""
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    latency = float(np.median(times))
    n, _, h, w = x.shape
    return {
        "latency_ms": round(latency * 1e3, 3),
        "mpix_per_s": round(n * h * scale * w * scale / 1e6 / latency, 4),
    }
