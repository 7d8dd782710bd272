"""The evaluate stage: every trained variant and the bicubic baseline on the test split and the
benchmark folders, then metrics files, comparison pictures, plots, the HTML report and MLflow.

Reads `models/<v>/model.pt` (+ history.csv), `data/prepared/<split>/{hr,lr}`; writes `reports/`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gensr.evaluate import inference, plots, results
from gensr.evaluate.compare import comparison_picture, detail_crop
from gensr.evaluate.report import write_report
from gensr.evaluate.sets import eval_sets
from gensr.evaluate.texture import LpipsModel, gmsd, hf_ratio, lpips_note, texture_distance
from gensr.evaluate.uncertainty import sample_std
from gensr.io import replace_dir, save_png
from gensr.metrics import psnr_rgb, psnr_y, ssim_y

REPORTS = "reports"
MODELS = "models"


def _measure(sr, hr, scale: int, lpips: LpipsModel | None) -> dict[str, Any]:
    row = {
        "psnr_y": psnr_y(sr, hr, scale),
        "ssim_y": ssim_y(sr, hr, scale),
        "psnr_rgb": psnr_rgb(sr, hr, scale),
        "texture_distance": texture_distance(sr, hr, scale),
        "hf_ratio": hf_ratio(sr, hr, scale),
        "gmsd": gmsd(sr, hr, scale),
    }
    if lpips is not None:
        row["lpips"] = lpips(sr, hr)
    return row


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a freshly written folder in for the old one (no stale pictures from earlier runs; a
    kill -9 mid-swap leaves the old set or the new one, never a half-deleted folder)."""
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
    replace_dir(tmp, final)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def run_evaluation(cfg: DictConfig, root: Path) -> dict[str, Any]:
    """Run the whole stage; returns {summary, champion, run_ids, summary_run_id, files}."""
    import torch

    ecfg = cfg.evaluate
    scale, channels = int(cfg.degradation.scale), int(cfg.data.channels)
    root = Path(root).resolve()
    if int(ecfg.get("threads") or 0) > 0:
        torch.set_num_threads(int(ecfg.threads))
    device = inference.resolve_device(str(ecfg.device))
    names = [str(v) for v in cfg.variants]
    variants = inference.load_variants(root / MODELS, names, scale, channels, device)
    lpips_path = ecfg.get("lpips_weights")
    if lpips_path and not Path(str(lpips_path)).is_absolute():
        lpips_path = str(root / str(lpips_path))
    lpips = LpipsModel(lpips_path) if lpips_path else None
    sets, set_notes = eval_sets(root, cfg.data.out_dir, str(ecfg.split), ecfg.get("benchmarks"),
                                str(ecfg.get("on_missing_benchmark", "fail")))

    # Connect before the compute so an unreachable tracking server fails in seconds, not after.
    tracker = None
    if ecfg.get("mlflow", True):
        from gensr.evaluate.tracking import EvalTracker

        tracker = EvalTracker(str(OmegaConf.select(cfg, "logger.experiment", default="gensr")), root,
                              float(OmegaConf.select(cfg, "logger.connect_timeout_s", default=10)))
        tracker.attach(variants)

    try:
        return _evaluate(cfg, root, variants, sets, set_notes, lpips, lpips_path, device, tracker)
    except BaseException:
        if tracker is not None:
            tracker.abort()
        raise


def _evaluate(cfg, root, variants, sets, set_notes, lpips, lpips_path, device, tracker) -> dict[str, Any]:
    ecfg = cfg.evaluate
    scale, channels = int(cfg.degradation.scale), int(cfg.data.channels)
    reports = root / REPORTS
    names = [v.name for v in variants]
    split_id = sets[0].id
    wanted = ecfg.get("comparison_sets")
    picture_sets = {s.id for s in sets} if wanted is None else {str(s).lower() for s in wanted}
    for v in variants:
        inference.warm_up(v.net, channels, scale)
    from gensr.archs import is_variational

    sampled = [v for v in variants if is_variational(v.net)]
    n_samples, seed = int(ecfg.uncertainty.samples), int(ecfg.uncertainty.seed)
    tile, overlap = int(ecfg.tile), int(ecfg.tile_overlap)
    reports.mkdir(parents=True, exist_ok=True)
    for stale in reports.glob(".comparisons.*"):  # left by a run killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    cmp_tmp = Path(tempfile.mkdtemp(prefix=".comparisons.", dir=reports))
    rows: list[dict] = []
    pictures: dict[str, list[tuple[str, Path, str]]] = {}
    lr_sources: dict[str, set[str]] = {}
    try:
        for s in sets:
            t0, n = time.perf_counter(), 0
            for pair in s.pairs(scale, channels, cfg.data.get("max_pixels")):
                n += 1
                lr_sources.setdefault(s.id, set()).add(pair.lr_source)
                outputs, seconds = {}, {}
                outputs[results.BASELINE], seconds[results.BASELINE] = inference.timed_bicubic(pair.lr, scale)
                for v in variants:
                    outputs[v.name], seconds[v.name] = inference.timed_upscale(v.net, pair.lr, scale, tile, overlap)
                h, w = pair.hr.shape[:2]
                psnrs = {}
                for method, sr in outputs.items():
                    m = _measure(sr, pair.hr, scale, lpips)
                    psnrs[method] = m["psnr_y"]
                    rows.append({"set": s.id, "image": pair.name, "method": method, "height": h, "width": w,
                                 "lr_source": pair.lr_source, **m, "seconds": seconds[method],
                                 "ms_per_mp": 1000.0 * seconds[method] / (h * w / 1e6)})
                if s.id in picture_sets:
                    box = detail_crop(pair.hr, int(ecfg.crop_size), scale, border=scale)
                    maps = {v.name: sample_std(v.net, pair.lr, scale, box, n_samples, seed, overlap) for v in sampled}
                    pic, (top, left, side) = comparison_picture(
                        pair.hr, pair.lr, outputs, psnrs, scale, int(ecfg.crop_size), int(ecfg.panel_size),
                        box=box, uncertainty=maps)
                    rel = Path(s.id) / f"{pair.name}.png"
                    save_png(cmp_tmp / rel, pic)
                    caption = (f"{pair.name} ({w}x{h}, LR: {pair.lr_source}); crop {side}x{side} at "
                               f"({left}, {top}); best: {max(psnrs, key=psnrs.get)}")
                    if maps:
                        caption += (f". std panel: per-pixel standard deviation of {n_samples} samples (seed {seed}) "
                                    "of " + ", ".join(maps) + ", black = 0 to yellow = the labelled value "
                                    "in 8-bit grey levels")
                    pictures.setdefault(s.id, []).append((pair.name, reports / "comparisons" / rel, caption))
            print(f"[evaluate] {s.id}: {n} images x {1 + len(variants)} methods in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        _replace_dir(cmp_tmp, reports / "comparisons")
    finally:
        shutil.rmtree(cmp_tmp, ignore_errors=True)

    params = {v.name: v.params for v in variants}
    summary = results.summarise(rows, params)
    champ = results.champion(summary, split_id, names)
    champ["perceptual"] = results.perceptual_champion(summary, split_id, names,
                                                      float(ecfg.perceptual_min_gain_db))
    files = [
        results.write_metrics(reports / "metrics.json", summary),
        results.write_per_image(reports / "per_image.csv", rows),
        results.write_champion(reports / "champion.json", champ),
        results.write_leaderboard_csv(reports / "plots" / "leaderboard.csv", summary, split_id),
    ]
    curves, have_curves = plots.training_curves(
        {v.name: root / MODELS / v.name / "history.csv" for v in variants},
        reports / "plots" / "training_curves.png")
    ordered = sorted(summary[split_id].items(), key=lambda kv: -(kv[1].get("psnr_y") or 0.0))
    chart = plots.comparison_chart([{"variant": k, **e} for k, e in ordered], split_id,
                                   reports / "plots" / "comparison.png")
    charts = [(f"Per-variant comparison ({split_id})", chart)]
    if have_curves:
        charts.append(("Training curves", curves))
    files += [chart, curves]

    notes = set_notes + _notes(cfg, scale, device, lr_sources, lpips_path, tracker, have_curves, champ)
    html = write_report(
        reports / "index.html", summary=summary, split_id=split_id, champ=champ, scale=scale,
        run_ids=dict(tracker.run_ids) if tracker else {}, comparisons=pictures, charts=charts, notes=notes)
    files.append(html)

    summary_run = None
    if tracker is not None:
        config = {f"evaluate.{k}": v for k, v in OmegaConf.to_container(ecfg, resolve=True).items()}
        config.update({"variants": ",".join(names), "scale": scale, "channels": channels})
        summary_run = tracker.log(summary, champ, files, reports / "comparisons", config)
    return {"summary": summary, "champion": champ, "run_ids": dict(tracker.run_ids) if tracker else {},
            "summary_run_id": summary_run, "files": files}


def _notes(cfg, scale, device, lr_sources, lpips_path, tracker, have_curves, champ) -> list[str]:
    ecfg = cfg.evaluate
    notes = [
        "Protocol: PSNR/SSIM on BT.601 studio-range Y, HR modcropped, "
        f"{scale} pixels shaved from each border; SSIM with an 11x11 Gaussian window (sigma 1.5).",
        "Bicubic baseline: Pillow's BICUBIC upscale of the 8-bit LR to the HR size, identical for every set.",
    ]
    for set_id, src in lr_sources.items():
        how = {"prepared": f"the prepare stage's LR ({cfg.degradation.get('kind', 'bicubic')} degradation)",
               "LR_bicubic": f"the standard LR_bicubic/X{scale} files beside the HR folder",
               "degradation": "the project's MATLAB-style bicubic degradation of the HR"}
        notes.append(f"{set_id}: LR from " + " and ".join(how[s] for s in sorted(src)) + ".")
    notes += [
        "Texture distance: 2-Wasserstein distance between SR's and HR's band-pass gradient covariance in "
        "every 3x3 patch of a 3-octave Laplacian pyramid of Y, relative to HR's detail amplitude; 0 = HR's "
        "local detail statistics. Blur, noise, blocking and ringing all raise it.",
        "Perceptual champion: " + (champ["perceptual"]["fallback"] or champ["perceptual"]["rule"]) + ".",
        "HF detail ratio: RMS of the high-pass band (Y minus Gaussian blur, sigma 1) of SR over HR's; "
        "alignment-free, so it measures how much detail, not whether it is the right detail (see GMSD).",
        "GMSD (Xue et al. 2014): deviation of the gradient-magnitude similarity map; 0 = same gradients.",
        lpips_note(lpips_path),
        f"Timing: upscaling only (no file I/O or metrics) on {device}, after one warm-up call per model; "
        f"images over {ecfg.tile}x{ecfg.tile} LR pixels run in tiles (overlap {ecfg.tile_overlap}). "
        "ms per megapixel of SR output.",
    ]
    if not have_curves:
        notes.append("Training curves: no models/<variant>/history.csv found.")
    if tracker is None:
        notes.append("MLflow logging disabled (evaluate.mlflow=false).")
    else:
        notes += tracker.notes
    return notes
