"""Per-image rows -> per-set, per-method summaries, and the files DVC tracks.

- `reports/per_image.csv`: one row per (set, image, method).
- `reports/metrics.json`: {set: {method: {psnr_y, ssim_y, ..., delta_psnr_y, ms_per_mp, params}}}
  (DVC metrics; `dvc metrics show/diff` flatten it to e.g. `test.gan.psnr_y`).
- `reports/champion.json`: the fidelity champion {variant, psnr_y, set} (best PSNR-Y on the test
  split) and under `perceptual` the perceptual champion with the same fields plus
  {texture_distance, min_psnr_y, qualified, fallback, rule}: the lowest texture distance among the
  trained variants with PSNR-Y >= bicubic + `evaluate.perceptual_min_gain_db` on that same split;
  when none qualifies, the fidelity champion, with `qualified: false` and `fallback` saying why.
  Export depends on this file alone, so it holds no timings and figures rounded to 1e-4:
  re-evaluating with other settings leaves its bytes (and the export stage) unchanged unless a
  champion itself changes.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from gensr.io import atomic_write_json, atomic_write_text

BASELINE = "bicubic"
FIDELITY = ["psnr_y", "ssim_y", "psnr_rgb"]
PERCEPTION = ["texture_distance", "hf_ratio", "gmsd", "lpips"]
QUALITY = FIDELITY + PERCEPTION
CSV_FIELDS = ["set", "image", "method", "height", "width", "lr_source", *QUALITY, "seconds", "ms_per_mp"]


def _clean(x):
    """JSON-safe number: NaN/inf (e.g. PSNR of identical images) become null."""
    if isinstance(x, float | np.floating):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def summarise(rows: list[dict], params: dict[str, int]) -> dict[str, dict[str, dict]]:
    """Means per set and method (papers average per-image PSNR), plus deltas vs bicubic."""
    out: dict[str, dict[str, dict]] = {}
    # Sets and methods keep the order they were evaluated in (test split first, bicubic first).
    for set_id, method in dict.fromkeys((r["set"], r["method"]) for r in rows):
        mine = [r for r in rows if r["set"] == set_id and r["method"] == method]
        entry = {"n_images": len(mine)}
        for q in QUALITY:
            vals = [r[q] for r in mine if r.get(q) is not None]
            if vals:
                entry[q] = float(np.mean(vals))
        seconds = sum(r["seconds"] for r in mine)
        megapixels = sum(r["height"] * r["width"] for r in mine) / 1e6
        entry["seconds_per_image"] = seconds / len(mine)
        entry["ms_per_mp"] = 1000.0 * seconds / megapixels
        entry["params"] = int(params.get(method, 0))
        out.setdefault(set_id, {})[method] = entry
    for methods in out.values():
        base = methods.get(BASELINE)
        for entry in methods.values():
            if base is not None:
                entry["delta_psnr_y"] = entry["psnr_y"] - base["psnr_y"]
                entry["delta_ssim_y"] = entry["ssim_y"] - base["ssim_y"]
    return out


def rounded(summary: dict) -> dict:
    """metrics.json content: readable precision, JSON-safe."""
    def r(k, v):
        v = _clean(v)
        if isinstance(v, float):
            return round(v, 3 if k in ("seconds_per_image", "ms_per_mp") else 6)
        return v

    return {s: {m: {k: r(k, v) for k, v in e.items()} for m, e in ms.items()} for s, ms in summary.items()}


def champion(summary: dict, split_id: str, variants: list[str]) -> dict:
    """The trained variant with the best mean PSNR-Y on the test split (first listed on a tie)."""
    table = summary.get(split_id, {})
    scored = [(table[v]["psnr_y"], -i, v) for i, v in enumerate(variants) if v in table]
    if not scored:
        raise ValueError(f"no trained variant was evaluated on '{split_id}': nothing to crown")
    best = max(scored)[2]
    return {"variant": best, "psnr_y": round(float(table[best]["psnr_y"]), 4), "set": split_id}


def perceptual_champion(summary: dict, split_id: str, variants: list[str], min_gain_db: float) -> dict:
    """The lowest texture distance among trained variants at least `min_gain_db` dB PSNR-Y above
    bicubic on the test split (first listed on a tie); the fidelity champion when none qualifies."""
    table = summary.get(split_id, {})
    floor = float(table[BASELINE]["psnr_y"]) + float(min_gain_db)
    gain = f"{'+' if min_gain_db >= 0 else '-'} {abs(min_gain_db):g} dB"
    rule = f"lowest texture_distance among variants with psnr_y >= bicubic {gain} on {split_id}"
    scored = [(-table[v]["texture_distance"], -i, v) for i, v in enumerate(variants)
              if v in table and table[v]["psnr_y"] >= floor and table[v].get("texture_distance") is not None]
    fallback = None
    if scored:
        best = max(scored)[2]
    else:
        best = champion(summary, split_id, variants)["variant"]
        fallback = (f"no variant reached bicubic {gain} ({floor:.2f} dB PSNR-Y on {split_id}): "
                    f"the fidelity champion {best} stands in")
    texture = table[best].get("texture_distance")
    return {"variant": best, "psnr_y": round(float(table[best]["psnr_y"]), 4), "set": split_id,
            "texture_distance": None if texture is None else round(float(texture), 4),
            "min_psnr_y": round(floor, 4), "qualified": fallback is None, "fallback": fallback, "rule": rule}


def write_per_image(path: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v))
                    for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def write_leaderboard_csv(path: Path, summary: dict, split_id: str) -> Path:
    """DVC plot data: one row per method on the test split (bar chart in dvc.yaml)."""
    buf = io.StringIO()
    fields = ["method", "psnr_y", "ssim_y", "delta_psnr_y", "texture_distance", "hf_ratio", "gmsd", "ms_per_mp",
              "params"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for method, e in summary.get(split_id, {}).items():
        w.writerow({"method": method, **{k: (f"{v:.6g}" if isinstance(v, float) else v)
                                         for k, v in e.items() if k in fields}})
    return atomic_write_text(path, buf.getvalue())


def write_metrics(path: Path, summary: dict) -> Path:
    return atomic_write_json(path, rounded(summary))


def write_champion(path: Path, champ: dict) -> Path:
    return atomic_write_json(path, champ)
