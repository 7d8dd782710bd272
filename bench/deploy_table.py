"""(f) of bench/speed.py, the deployment table: for each shipped variant (exports/models/<variant>/
as the export stage writes it), output MP/s with ONNX Runtime's CPU provider, fp32 and int8, beside
its PSNR-Y gain over bicubic on Set5/Set14, so a user picks a point on the quality/speed curve.

- speed: each shipped file (model.onnx, model.int8.onnx) in a session of the production builder
  (`gensr.infer.batch.SRModel` -> `gensr.infer.session.make_session`), CPU provider, torch's thread
  count, on one random LR input of speed.py's last size (960x540 -> 1920x1080 at x2), whole image,
  as section (b) times it; the export stage's `benchmark` (one warm-up, median of the repeats).
- quality: the fp32 file through the production tiler (`gensr.infer.tiling.upscale_array`, gensr
  upscale's default tiles), scored by bench/scoring.py (the shared protocol, as bench/quality.py);
  the gain is its PSNR-Y minus the bicubic baseline's on the same standard LR_bicubic inputs.
- params, GFLOPs per output MP: of the trained model file the export came from (models/<v>/model.pt,
  counted by section (e)'s `count_flops`), when that file is still the exported model (same scale,
  architecture and MLflow run); else left blank, with a note why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scoring import bicubic_upscaler, score, scored_sets  # bench/ modules: speed.py puts bench/ on sys.path
from speed_inputs import ORT_CPU, ROOT, count_flops

DEFAULT_EXPORTS, DEFAULT_MODELS = ROOT / "exports" / "models", ROOT / "models"
DEFAULT_BENCHMARKS = ROOT.parent / "shared" / "benchmarks"
COLUMNS = ("variant", "params", "GFLOPs/MP", "fp32 MP/s", "int8 MP/s", "Set5 ΔPSNR-Y", "Set14 ΔPSNR-Y")


@dataclass(frozen=True)
class Where:
    """Where the shipped models, their trained model files and the benchmark sets are."""

    exports: Path = DEFAULT_EXPORTS
    models: Path = DEFAULT_MODELS
    benchmarks: Path = DEFAULT_BENCHMARKS


def shipped(exports: Path) -> list[Path]:
    """The variant folders holding the export stage's fp32 model, by name."""
    from gensr.export.stage import FILES

    if not exports.is_dir():
        raise FileNotFoundError(f"{exports}: no such folder (run the export stage, or pass --exports DIR)")
    found = sorted(d for d in exports.iterdir() if (d / FILES["fp32"]).is_file())
    if not found:
        raise FileNotFoundError(f"{exports}: no <variant>/{FILES['fp32']} inside (the export stage writes them)")
    return found


def speeds(fp32, x: np.ndarray, repeats: int) -> dict:
    """Output MP/s of the fp32 model and of the int8 file beside it (None: not shipped), and the
    providers that ran them."""
    from gensr.export.stage import FILES
    from gensr.export.validate import benchmark
    from gensr.infer.batch import SRModel

    int8 = fp32.path.with_name(FILES["int8"])  # absent when the export stage rejected it (PSNR drop)
    models = {"fp32": fp32, **({"int8": SRModel(int8, ORT_CPU, torch.get_num_threads())} if int8.is_file() else {})}
    out: dict = {"int8": None, "providers": {}}
    for kind, model in models.items():
        out[kind] = benchmark(model, x, fp32.scale, warmup=1, repeats=repeats)["mpix_per_s"]
        out["providers"][kind] = model.providers
    return out


def cost(folder: Path, models: Path, meta: dict, x: np.ndarray) -> tuple[int | None, float | None, str | None]:
    """(params, GFLOPs per output MP, None) of the trained model file, or (None, None, why not)."""
    from gensr.evaluate.inference import load_variants

    path = models / folder.name / "model.pt"
    if not path.is_file():
        return None, None, f"{path} absent: params and GFLOPs/MP not counted"
    try:
        variant = load_variants(models, [folder.name], meta["scale"], meta["channels"], "cpu")[0]
    except (ValueError, RuntimeError) as e:  # another scale, or weights of another architecture
        return None, None, f"{path} is not the exported model ({str(e).splitlines()[0]})"
    exported = meta.get("mlflow_run_id", "unknown")
    if exported != "unknown" and variant.run_id and variant.run_id != exported:
        return None, None, f"{path} is MLflow run {variant.run_id}, the export is run {exported}: not counted"
    out_mp = x.shape[0] * x.shape[2] * x.shape[3] * meta["scale"] ** 2 / 1e6
    return variant.params, count_flops(variant.net.eval(), torch.from_numpy(x)) / 1e9 / out_mp, None


def quality(model, sets: list, bicubic: dict) -> dict:
    """{set: {psnr_y, bicubic_psnr_y, gain_db}} of the fp32 model through the production tiler."""
    from gensr.infer.batch import ImageOptions
    from gensr.infer.tiling import upscale_array

    opts = ImageOptions()

    def sr_of(lr: np.ndarray) -> np.ndarray:
        out = upscale_array(model, lr, model.scale, opts.tile, opts.overlap)
        return np.clip(out, 0.0, 1.0, out=out)  # as gensr upscale writes it (blend weights: 1 +- 1e-7)

    got = score(sr_of, sets, model.scale, model.channels)
    return {s: {"psnr_y": m["psnr_y"], "bicubic_psnr_y": bicubic[s]["psnr_y"],
                "gain_db": m["psnr_y"] - bicubic[s]["psnr_y"]} for s, m in got.items()}


def fmt(value, spec: str, none: str = "–") -> str:
    return none if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        gains = [r["sets"].get(s) for s in ("Set5", "Set14")]
        params = f"{r['params'] / 1e3:.0f}K" if r["params"] else "–"
        cells = [f"{r['variant']} (x{r['scale']})", params, fmt(r["gflops_per_mp"], ".1f"), fmt(r["fp32_mps"], ".3f"),
                 fmt(r["int8_mps"], ".3f")]
        cells += [f"{g['gain_db']:+.2f} dB ({g['psnr_y']:.2f})" if g else "–" for g in gains]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {r['variant']}: {r['note']}" for r in rows if r["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))


def section_f(cfg: dict, say) -> list:
    """The table, into cfg["tables"]["deployment"] (speed.py prints it and writes it to its JSON);
    no figure rows: the table is this section's one result."""
    from gensr.export.stage import FILES
    from gensr.infer.batch import SRModel

    where: Where = cfg.get("where") or Where()
    w, h = cfg["sizes"][-1]
    sets, bicubic = [], {}
    if (where.benchmarks / "Set5" / "HR").is_dir() and (where.benchmarks / "Set14" / "HR").is_dir():
        sets = scored_sets(where.benchmarks, [])
    else:
        say(f"(f) {where.benchmarks} lacks Set5/HR and Set14/HR: no PSNR-Y gains (pass --benchmarks DIR)")
    rows = []
    for folder in shipped(where.exports):
        fp32 = SRModel(folder / FILES["fp32"], ORT_CPU, torch.get_num_threads())  # as gensr upscale opens it
        scale, channels = fp32.scale, fp32.channels  # from the file's gensr metadata
        x = np.random.default_rng(0).random((1, channels, h, w), dtype=np.float32)
        mps = speeds(fp32, x, cfg["infer_rounds"])
        params, gflops, note = cost(folder, where.models, fp32.meta, x)
        if sets and (scale, channels) not in bicubic:  # the baseline once per scale, not per variant
            bicubic[scale, channels] = score(bicubic_upscaler(scale), sets, scale, channels)
        gains = quality(fp32, sets, bicubic[scale, channels]) if sets else {}
        row = {"variant": folder.name, "scale": scale, "params": params, "gflops_per_mp": gflops,
               "fp32_mps": mps["fp32"], "int8_mps": mps["int8"], "providers": mps["providers"], "sets": gains,
               "input": [w, h], "note": note}
        rows.append(row)
        say(f"(f) {folder.name} x{scale}, {w}x{h} LR, providers {mps['providers']}: fp32 {fmt(mps['fp32'], '.3f')} "
            f"MP/s, int8 {fmt(mps['int8'], '.3f')} MP/s; GFLOPs/MP {fmt(gflops, '.1f')}; "
            + "; ".join(f"{s} {g['psnr_y']:.2f} dB ({g['gain_db']:+.2f} over bicubic)" for s, g in gains.items())
            + (f" [{note}]" if note else ""))
    title = f"deployment: ORT CPU ({torch.get_num_threads()} threads) on a {w}x{h} LR input, PSNR-Y over bicubic"
    cfg.setdefault("tables", {})["deployment"] = {"title": title, "columns": list(COLUMNS), "rows": rows,
                                                  "markdown": markdown(rows)}
    return []
