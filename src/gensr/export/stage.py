"""The `export` stage: for each variant, export -> validate -> lighten -> ship -> register.

A variant whose fp32 ONNX fails parity is not shipped and the stage fails naming the variant,
the input shape and the difference (after the report is written, so it can be inspected).
Lighter models that lose too much PSNR-Y are recorded as rejected and not written. A variational
variant also ships its sampling graph, `model.sample.onnx` (see `gensr.export.sampler`).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from omegaconf import DictConfig

from gensr.archs import is_variational
from gensr.checkpoint import load_model
from gensr.data.pairs import read_split
from gensr.errors import UserError
from gensr.export import lighten
from gensr.export.onnx_export import ClampedSR, ExportError, build_metadata, check_graph, export_onnx, set_metadata
from gensr.export.sampler import export_sampler
from gensr.export.validate import (benchmark, compare, file_info, ort_runner, outputs, parity,
                                   random_inputs, split_inputs, split_psnr_y, torch_runner)
from gensr.infer import session as runtime
from gensr.infer.tiling import upscale_array
from gensr.io import atomic_write_bytes, atomic_write_json, check_replaceable, replace_dir

log = logging.getLogger("gensr.export")
FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx", "sampler": "model.sample.onnx"}


class ExportValidationError(UserError, RuntimeError):
    pass


def _tiling_check(session, pairs, scale: int, tile: int, overlap: int) -> float:
    """Max |tiled - untiled| over the test images, in 8-bit levels (the upscaler's blending)."""
    run = ort_runner(session)
    worst = 0.0
    for _, lr, _ in pairs:
        full = upscale_array(run, lr, scale, tile=0)
        tiled = upscale_array(run, lr, scale, tile=tile, overlap=overlap)
        worst = max(worst, float(np.abs(np.clip(full, 0, 1) - np.clip(tiled, 0, 1)).max()) * 255)
    return round(worst, 4)


@dataclass(frozen=True)
class _Fp32:
    """What the fp16 and int8 models are built from and measured against: the shipped fp32 graph,
    its test-split outputs and PSNR-Y, the test pairs and the speed input."""

    proto: onnx.ModelProto
    meta: dict
    psnr_y: float
    test_outputs: dict[str, np.ndarray]
    pairs: list
    speed_x: np.ndarray


def _lighter(
    kind: str, fp32: _Fp32, ex: DictConfig, providers: list[str], patches: list[np.ndarray] | None
) -> tuple[dict[str, Any], bytes | None]:
    """Build, check and measure the fp16 or int8 model; (report entry, bytes when it ships)."""
    meta, pairs = fp32.meta, fp32.pairs
    scale = int(meta["scale"])
    if kind == "fp16":
        light = lighten.to_fp16(fp32.proto)
    else:
        light = lighten.to_int8(fp32.proto, patches, ex.calibration.method, ex.calibration.float_edge_convs)
    set_metadata(light, build_metadata(meta, ex.opset, precision=kind))
    check_graph(light, ex.opset, f"variant {meta['variant']} ({kind})")
    blob = light.SerializeToString()
    session = runtime.make_session(blob, providers)
    run = ort_runner(session)
    sr = outputs(run, split_inputs(pairs))
    psnr_val = split_psnr_y(sr, pairs, scale)
    drop = fp32.psnr_y - psnr_val
    limit = float(ex[f"{kind}_max_psnr_drop_db"])
    entry = {
        "providers": session.get_providers(),
        "psnr_y": round(psnr_val, 4),
        "psnr_y_drop_db": round(drop, 4),
        "max_psnr_drop_db": limit,
        "max_abs_diff_vs_fp32": round(max(compare(fp32.test_outputs[k], sr[k])[0] for k in sr), 6),
        "speed": benchmark(run, fp32.speed_x, scale, ex.speed.warmup, ex.speed.repeats),
        "shipped": bool(drop <= limit),
        **file_info(blob),
    }
    if not entry["shipped"]:
        entry["rejected"] = f"PSNR-Y drop {drop:.3f} dB > {limit} dB on the test split"
    return entry, blob if entry["shipped"] else None


def export_variant(
    variant: str, cfg: DictConfig, root: Path, pairs, patches, providers: list[str]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Report entry and {precision: bytes} to ship (empty when fp32 parity failed)."""
    ex = cfg.export
    t0 = time.perf_counter()
    path = root / ex.models_dir / variant / "model.pt"
    try:
        net, meta = load_model(path, variant=variant, scale=int(cfg.degradation.scale),
                               channels=int(cfg.data.channels))
    except RuntimeError as e:  # load_state_dict: weights of another version of the architecture
        raise ExportError(f"{path}: weights do not fit the current architecture code; retrain "
                          f"variant {variant} ({str(e).splitlines()[0]} ...)") from e
    scale, channels = int(meta["scale"]), int(meta["channels"])
    proto = export_onnx(net, meta, ex.opset)
    blob = proto.SerializeToString()
    session = runtime.make_session(blob, providers)
    torch_run, ort_run = torch_runner(ClampedSR(net).eval()), ort_runner(session)

    tests = split_inputs(pairs)
    inputs = random_inputs(ex.parity_shapes, ex.parity_batches, channels, ex.seed) | tests
    torch_out, ort_out = outputs(torch_run, inputs), outputs(ort_run, inputs)
    check = parity(inputs, torch_out, ort_out, ex.max_abs_diff, ex.min_psnr_db)
    entry: dict[str, Any] = {
        "scale": scale, "channels": channels, "mlflow_run_id": meta.get("mlflow_run_id"),
        "providers": session.get_providers(), "parity": check,
    }
    if not check["passed"]:
        entry["shipped"] = False
        return entry, {}

    n, h, w = ex.speed.shape
    speed_x = np.random.default_rng(ex.seed).random((n, channels, h, w), dtype=np.float32)
    ort_speed = benchmark(ort_run, speed_x, scale, ex.speed.warmup, ex.speed.repeats)
    torch_speed = benchmark(torch_run, speed_x, scale, ex.speed.warmup, ex.speed.repeats)
    base_psnr = split_psnr_y(ort_out, pairs, scale)
    entry.update({
        "shipped": True,
        "psnr_y": round(base_psnr, 4),
        "psnr_y_torch": round(split_psnr_y(torch_out, pairs, scale), 4),
        "tiling_max_diff_8bit": _tiling_check(session, pairs, scale, ex.tiling_check.tile, ex.tiling_check.overlap),
        "speed": {
            "input_shape": [n, channels, h, w],
            "threads": runtime.physical_cores(),
            "onnxruntime": ort_speed,
            "torch_eager": torch_speed,
            "ort_speedup": round(torch_speed["latency_ms"] / ort_speed["latency_ms"], 3),
        },
        **file_info(blob),
    })
    ship = {"fp32": blob}
    fp32 = _Fp32(proto, meta, base_psnr, {k: ort_out[k] for k in tests}, pairs, speed_x)
    # fp16 is meant for GPU (CUDA when usable); int8 QDQ for the CPU provider.
    for kind, kind_providers, kind_patches in (("fp16", providers, None), ("int8", ["CPUExecutionProvider"], patches)):
        sub, sub_blob = _lighter(kind, fp32, ex, kind_providers, kind_patches)
        entry[kind] = sub
        if sub_blob is not None:
            ship[kind] = sub_blob
    if is_variational(net):
        entry["sampler"], sampler_blob = export_sampler(net, meta, ex, pairs, providers)
        if sampler_blob is not None:
            ship["sampler"] = sampler_blob
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    return entry, ship


def _write_variant(out_dir: Path, ship: dict[str, bytes]) -> dict[str, Path]:
    """Write the shipped files (into a fresh folder: no stale int8 from an earlier run survives)."""
    return {kind: atomic_write_bytes(out_dir / name, ship[kind]) for kind, name in FILES.items() if kind in ship}


def _read_champion(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        log.warning("%s is missing (evaluate stage not run): no champion alias is set", path)
        return None
    fix = "rerun the evaluate stage that writes it (dvc repro -f evaluate)"
    try:
        champion = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not JSON ({e}); {fix}") from None
    if not isinstance(champion, dict) or not isinstance(champion.get("variant"), str):
        raise UserError(f'{path}: not a champion record {{"variant": ...}}; {fix}')
    return champion


def run_stage(cfg: DictConfig, root: Path) -> dict[str, Any]:
    """Run the whole stage; write exports/validation.json; raise ExportValidationError on failures."""
    ex = cfg.export
    torch.manual_seed(ex.seed)
    torch.set_num_threads(runtime.physical_cores())
    providers = runtime.choose_providers(torch.cuda.is_available())
    data_dir = root / cfg.data.out_dir
    channels = int(cfg.data.channels)
    pairs = list(islice(read_split(data_dir / "test", int(cfg.degradation.scale), channels), ex.test_images))
    patches = lighten.calibration_patches(
        data_dir / "train" / "lr", ex.calibration.patches, ex.calibration.patch_size, channels, ex.calibration.seed
    )
    champion = _read_champion(root / ex.champion_file)
    out_root = root / ex.out_dir
    report: dict[str, Any] = {
        # Thresholds and shapes are params (params.yaml: export); this file holds the figures.
        "providers_requested": providers,
        "test_images": len(pairs),
        "champion": champion,
        "variants": {},
    }
    failures, shipped = [], {}
    # Built aside and swapped in whole: a kill -9 leaves the previous models, never a mix.
    staging, final = out_root / ".models.partial", out_root / "models"
    # Before any work: the result replaces it whole. Variant folders alone are an older gensr's output.
    variant_folders = frozenset(cfg.variants) | frozenset(cfg.get("models") or {})
    check_replaceable(final, "export.out_dir", variant_folders)
    if (out_root / "validation.json").exists() and not final.is_dir():  # someone else's file of that name
        raise UserError(f"{out_root / 'validation.json'} (export.out_dir): exists, but no export was written "
                        "there; move it away or choose another export.out_dir")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for variant in cfg.variants:
        log.info("exporting %s", variant)
        entry, ship = export_variant(variant, cfg, root, pairs, patches, providers)
        report["variants"][variant] = entry
        if not entry["shipped"]:
            failures += [f"variant {variant}: {f}" for f in entry["parity"]["failures"]]
            continue
        sampler_check = entry.get("sampler", {}).get("parity", {})
        failures += [f"variant {variant} (sampler): {f}" for f in sampler_check.get("failures", [])]
        for kind, path in _write_variant(staging / variant, ship).items():
            entry.setdefault(kind, {})["path"] = str((final / variant / path.name).relative_to(root))
        shipped[variant] = entry
    replace_dir(staging, final, variant_folders)
    report_path = atomic_write_json(out_root / "validation.json", report)  # kept even if MLflow fails
    if ex.register and not failures:
        try:
            report["registry"] = _register(cfg, root, shipped, champion)
        except Exception as e:
            report["registry"] = {"error": f"{type(e).__name__}: {e}"}
            raise
        finally:
            atomic_write_json(report_path, report)
    if failures:
        raise ExportValidationError(
            "ONNX parity failed; these models are not shipped:\n  " + "\n  ".join(failures)
        )
    return report


def _register(cfg: DictConfig, root: Path, shipped: dict[str, dict], champion: dict | None) -> dict[str, Any]:
    from gensr.export import registry
    from gensr.tracking import configure

    experiment_id = configure(cfg.logger.experiment, root)
    out: dict[str, Any] = {"models": {}}
    for variant, entry in shipped.items():
        files = [root / entry[k]["path"] for k in ("fp16", "int8", "sampler") if "path" in entry.get(k, {})]
        meta = {"variant": variant, "scale": entry["scale"], "channels": entry["channels"],
                "mlflow_run_id": entry["mlflow_run_id"]}
        metrics = {"parity_max_abs_diff": entry["parity"]["max_abs_diff"], "psnr_y_onnx": entry["psnr_y"],
                   "ort_latency_ms": entry["speed"]["onnxruntime"]["latency_ms"],
                   "int8_psnr_y_drop_db": entry["int8"]["psnr_y_drop_db"]}
        if "quality" in entry.get("sampler", {}):
            metrics["sampler_worst_margin_db"] = entry["sampler"]["quality"]["worst_margin_over_bicubic_db"]
        out["models"][variant] = registry.log_and_register(root / entry["fp32"]["path"], meta, experiment_id,
                                                           files, metrics)
    if champion:
        _aliases(registry, out, champion, int(cfg.degradation.scale), list(shipped), cfg.export.champion_file)
    return out


def _aliases(registry, out: dict[str, Any], champion: dict, scale: int, variants: list[str], source: str) -> None:
    """`champion` (fidelity) and `champion-perceptual` onto the evaluate stage's picks."""
    if "perceptual" not in champion:
        out["champion_perceptual_note"] = (f"{source} has no 'perceptual' entry (written by an older evaluate "
                                           f"stage): alias {registry.PERCEPTUAL_ALIAS} not set")
        log.warning(out["champion_perceptual_note"])
    elif champion["perceptual"] is None:  # no model qualified: an older pick must not linger
        registry.clear_alias(scale, registry.PERCEPTUAL_ALIAS, variants)
        out["champion_perceptual_note"] = f"{source}: no perceptual champion; alias {registry.PERCEPTUAL_ALIAS} removed"
    picks = (("champion_uri", registry.CHAMPION_ALIAS, champion),
             ("champion_perceptual_uri", registry.PERCEPTUAL_ALIAS, champion.get("perceptual")))
    for key, alias, pick in picks:
        name = (pick or {}).get("variant")
        if name in out["models"]:
            out[key] = registry.set_champion(scale, name, out["models"][name]["version"], variants, alias)
        elif pick:
            log.warning("%s %r is not among the exported variants %s", alias, name, variants)
