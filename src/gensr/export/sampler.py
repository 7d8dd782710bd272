"""The sampling ONNX of a variational variant (`model.sample.onnx`): export, parity, quality.

Validated like the deterministic graph: ORT against torch eager on the same inputs *and the same
noise* (random shapes, batch 1 and 2, the test images) within the stage's tolerances; a failure
fails the stage. Then each of `export.sampler.samples` seeded samples of every test image is
scored (PSNR-Y against HR) beside the bicubic baseline; the sampler ships only when every sample
beats bicubic by at least `export.sampler.min_margin_db`, like the fp16/int8 rule.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig
from torch import nn

from gensr.data.resize import bicubic_upscale
from gensr.export.onnx_export import SampledSR, export_onnx
from gensr.export.validate import (file_info, ort_runner, outputs, parity, random_inputs, split_inputs, to_hwc,
                                   torch_runner)
from gensr.infer import session as runtime
from gensr.metrics import psnr_y


def _noises(net: nn.Module, inputs: dict[str, np.ndarray], seed: int, index: int) -> dict[str, np.ndarray]:
    return {name: runtime.sample_noise(net.noise_shape(*x.shape[:1], *x.shape[2:]), seed, index)
            for name, x in inputs.items()}


def sample_scores(run, net: nn.Module, pairs, scale: int, samples: int, seed: int) -> dict[str, Any]:
    """PSNR-Y of `samples` seeded samples per test image against HR, and of bicubic."""
    tests = split_inputs(pairs)
    per_image = {}
    for name, lr, hr in pairs:
        per_image[name] = {"bicubic_psnr_y": psnr_y(bicubic_upscale(lr, scale), hr, border=scale), "samples": []}
    for k in range(samples):
        sr = outputs(run, tests, _noises(net, tests, seed, k))
        for name, _, hr in pairs:
            per_image[name]["samples"].append(psnr_y(to_hwc(sr[f"test_{name}"]), hr, border=scale))
    margins = [s - v["bicubic_psnr_y"] for v in per_image.values() for s in v["samples"]]
    return {
        "samples_per_image": samples,
        "psnr_y": round(float(np.mean([s for v in per_image.values() for s in v["samples"]])), 4),
        "bicubic_psnr_y": round(float(np.mean([v["bicubic_psnr_y"] for v in per_image.values()])), 4),
        "worst_margin_over_bicubic_db": round(float(min(margins)), 4),
        "per_image": {n: {"bicubic_psnr_y": round(v["bicubic_psnr_y"], 4),
                          "samples": [round(s, 4) for s in v["samples"]]} for n, v in per_image.items()},
    }


def export_sampler(
    net: nn.Module, meta: dict[str, Any], ex: DictConfig, pairs, providers: list[str]
) -> tuple[dict[str, Any], bytes | None]:
    """(report entry, bytes when it ships). entry["parity"]["passed"] False = a stage failure."""
    channels, scale = int(meta["channels"]), int(meta["scale"])
    proto = export_onnx(net, meta, ex.opset, sampler=True)
    blob = proto.SerializeToString()
    session = runtime.make_session(blob, providers)
    ort_run = ort_runner(session)
    inputs = random_inputs(ex.parity_shapes, ex.parity_batches, channels, ex.seed) | split_inputs(pairs)
    noise = _noises(net, inputs, ex.seed, 0)
    check = parity(inputs, outputs(torch_runner(SampledSR(net).eval()), inputs, noise),
                   outputs(ort_run, inputs, noise), ex.max_abs_diff, ex.min_psnr_db)
    props = {p.key: p.value for p in proto.metadata_props}
    entry: dict[str, Any] = {"providers": session.get_providers(), "parity": check, "noise_shape": props["noise_shape"]}
    if not check["passed"]:
        return {**entry, "shipped": False}, None
    entry["quality"] = sample_scores(ort_run, net, pairs, scale, ex.sampler.samples, ex.seed)
    entry.update(ship_rule(entry["quality"], float(ex.sampler.min_margin_db)))
    return {**entry, **file_info(blob)}, blob if entry["shipped"] else None


def ship_rule(quality: dict[str, Any], min_margin_db: float) -> dict[str, Any]:
    """{"shipped": bool} (+ "rejected": why): every sample of every test image must beat bicubic."""
    margin = quality["worst_margin_over_bicubic_db"]
    if margin >= min_margin_db:
        return {"shipped": True}
    return {"shipped": False, "rejected": f"a sample's PSNR-Y is {margin:+.3f} dB from bicubic on the test "
                                          f"split (needs >= {min_margin_db:+g} dB for every sample of every image)"}
