"""The evaluate stage: every trained variant and the bicubic baseline on the test split and the
benchmark folders, then metrics files, comparison pictures, plots, the HTML report and MLflow.

Reads `models/<v>/model.pt` (+ history.csv), `data/prepared/<split>/{hr,lr}`; writes `reports/`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gensr.evaluate import inference, plots, results
from gensr.evaluate.compare import Layout, Panels, comparison_picture, detail_crop
from gensr.evaluate.report import Report, write_report
from gensr.evaluate.sets import EvalSet, eval_sets
from gensr.evaluate.texture import LpipsModel, gmsd, hf_ratio, lpips_note, texture_distance
from gensr.evaluate.uncertainty import Draws, sample_std
from gensr.io import check_replaceable, replace_dir, save_png
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


def _replace_dir(tmp: Path, final: Path, set_folders: frozenset[str]) -> None:
    """Swap a freshly written folder in for the old one (no stale pictures from earlier runs; a
    kill -9 mid-swap leaves the old set or the new one, never a half-deleted folder)."""
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
    replace_dir(tmp, final, set_folders)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class Setup:
    """What run_evaluation prepared before any image is scored."""

    cfg: DictConfig
    root: Path
    variants: list  # inference.Variant
    sets: list[EvalSet]
    set_notes: list[str]
    lpips: LpipsModel | None
    lpips_path: str | None
    device: str
    tracker: Any  # evaluate.tracking.EvalTracker, or None with evaluate.mlflow=false


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
        return _evaluate(Setup(cfg, root, variants, sets, set_notes, lpips, lpips_path, device, tracker))
    except BaseException:
        if tracker is not None:
            tracker.abort()
        raise


def _score_sets(st: Setup, cmp_tmp: Path) -> tuple[list[dict], dict, dict[str, set[str]]]:
    """Every method on every image: per-image rows, comparison pictures (written to `cmp_tmp`,
    listed with their final path under reports/comparisons) and each set's LR sources."""
    ecfg = st.cfg.evaluate
    scale, channels = int(st.cfg.degradation.scale), int(st.cfg.data.channels)
    wanted = ecfg.get("comparison_sets")
    picture_sets = {s.id for s in st.sets} if wanted is None else {str(s).lower() for s in wanted}
    from gensr.archs import is_variational

    sampled = [v for v in st.variants if is_variational(v.net)]
    draws = Draws(int(ecfg.uncertainty.samples), int(ecfg.uncertainty.seed), int(ecfg.tile_overlap))
    tile, overlap = int(ecfg.tile), int(ecfg.tile_overlap)
    layout = Layout(int(ecfg.crop_size), int(ecfg.panel_size))
    rows: list[dict] = []
    pictures: dict[str, list[tuple[str, Path, str]]] = {}
    lr_sources: dict[str, set[str]] = {}
    for s in st.sets:
        t0, n = time.perf_counter(), 0
        for pair, lr_source in s.pairs(scale, channels, st.cfg.data.get("max_pixels")):
            n += 1
            lr_sources.setdefault(s.id, set()).add(lr_source)
            outputs, seconds = {}, {}
            outputs[results.BASELINE], seconds[results.BASELINE] = inference.timed_bicubic(pair.lr, scale)
            for v in st.variants:
                outputs[v.name], seconds[v.name] = inference.timed_upscale(v.net, pair.lr, scale, tile, overlap)
            h, w = pair.hr.shape[:2]
            psnrs = {}
            for method, sr in outputs.items():
                m = _measure(sr, pair.hr, scale, st.lpips)
                psnrs[method] = m["psnr_y"]
                rows.append({"set": s.id, "image": pair.name, "method": method, "height": h, "width": w,
                             "lr_source": lr_source, **m, "seconds": seconds[method],
                             "ms_per_mp": 1000.0 * seconds[method] / (h * w / 1e6)})
            if s.id in picture_sets:
                box = detail_crop(pair.hr, layout.crop, scale, border=scale)
                maps = {v.name: sample_std(v.net, pair.lr, scale, box, draws) for v in sampled}
                pic, (top, left, side) = comparison_picture(pair.hr, pair.lr, Panels(outputs, psnrs, maps), scale,
                                                            layout, box=box)
                rel = Path(s.id) / f"{pair.name}.png"
                save_png(cmp_tmp / rel, pic)
                caption = (f"{pair.name} ({w}x{h}, LR: {lr_source}); crop {side}x{side} at "
                           f"({left}, {top}); best: {max(psnrs, key=psnrs.get)}")
                if maps:
                    caption += (f". std panel: per-pixel standard deviation of {draws.samples} samples (seed "
                                f"{draws.seed}) of " + ", ".join(maps) + ", black = 0 to yellow = the labelled "
                                "value in 8-bit grey levels")
                pictures.setdefault(s.id, []).append((pair.name, st.root / REPORTS / "comparisons" / rel, caption))
        print(f"[evaluate] {s.id}: {n} images x {1 + len(st.variants)} methods in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    return rows, pictures, lr_sources


def _evaluate(st: Setup) -> dict[str, Any]:
    cfg, ecfg, tracker = st.cfg, st.cfg.evaluate, st.tracker
    scale, channels = int(cfg.degradation.scale), int(cfg.data.channels)
    reports = st.root / REPORTS
    names = [v.name for v in st.variants]
    split_id = st.sets[0].id
    for v in st.variants:
        inference.warm_up(v.net, channels, scale)
    set_folders = frozenset(s.id for s in st.sets)  # what comparisons/ holds (an older gensr: unmarked)
    check_replaceable(reports / "comparisons", "evaluate's comparison pictures", set_folders)  # before any work
    reports.mkdir(parents=True, exist_ok=True)
    for stale in reports.glob(".comparisons.*"):  # left by a run killed mid-way
        shutil.rmtree(stale, ignore_errors=True)
    cmp_tmp = Path(tempfile.mkdtemp(prefix=".comparisons.", dir=reports))
    try:
        rows, pictures, lr_sources = _score_sets(st, cmp_tmp)
        _replace_dir(cmp_tmp, reports / "comparisons", set_folders)
    finally:
        shutil.rmtree(cmp_tmp, ignore_errors=True)

    params = {v.name: v.params for v in st.variants}
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
        {v.name: st.root / MODELS / v.name / "history.csv" for v in st.variants},
        reports / "plots" / "training_curves.png")
    ordered = sorted(summary[split_id].items(), key=lambda kv: -(kv[1].get("psnr_y") or 0.0))
    chart = plots.comparison_chart([{"variant": k, **e} for k, e in ordered], split_id,
                                   reports / "plots" / "comparison.png")
    charts = [(f"Per-variant comparison ({split_id})", chart)]
    if have_curves:
        charts.append(("Training curves", curves))
    files += [chart, curves]

    notes = st.set_notes + _notes(st, lr_sources, have_curves, champ)
    run_ids = dict(tracker.run_ids) if tracker else {}
    files.append(write_report(reports / "index.html", Report(summary, split_id, champ, scale, run_ids, pictures,
                                                             charts, notes)))

    summary_run = None
    if tracker is not None:
        config = {f"evaluate.{k}": v for k, v in OmegaConf.to_container(ecfg, resolve=True).items()}
        config.update({"variants": ",".join(names), "scale": scale, "channels": channels})
        summary_run = tracker.log(summary, champ, files, reports / "comparisons", config)
    return {"summary": summary, "champion": champ, "run_ids": run_ids, "summary_run_id": summary_run, "files": files}


def _notes(st: Setup, lr_sources: dict[str, set[str]], have_curves: bool, champ: dict) -> list[str]:
    cfg, ecfg = st.cfg, st.cfg.evaluate
    scale = int(cfg.degradation.scale)
    notes = [
        "Protocol: PSNR/SSIM on BT.601 studio-range Y, HR modcropped, "
        f"{scale} pixels shaved from each border; SSIM with an 11x11 Gaussian window (sigma 1.5).",
        "Bicubic baseline: MATLAB imresize bicubic of the 8-bit LR to the HR size (the papers' protocol), "
        "identical for every set and for training's validation figure.",
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
        lpips_note(st.lpips_path),
        f"Timing: upscaling only (no file I/O or metrics) on {st.device}, after one warm-up call per model; "
        f"images over {ecfg.tile}x{ecfg.tile} LR pixels run in tiles (overlap {ecfg.tile_overlap}). "
        "ms per megapixel of SR output.",
    ]
    if not have_curves:
        notes.append("Training curves: no models/<variant>/history.csv found.")
    if st.tracker is None:
        notes.append("MLflow logging disabled (evaluate.mlflow=false).")
    else:
        notes += st.tracker.notes
    return notes
