"""What a finished training run leaves: models/<v>/{model.pt, metrics.json, history.csv,
timings.json}, the same files and final metrics in its MLflow run (timing/* metrics: where the
wall time went, gensr.training.timing), and two summary lines on the console."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gensr.checkpoint import save_model
from gensr.io import atomic_write_json
from gensr.training import mlflow_logging as ml
from gensr.training import timing
from gensr.training.base import plain


@dataclass
class FinishedRun:
    """The pieces of a `train` run (gensr.training.run) its outputs are read from."""

    eff: dict[str, Any]          # effective_config: variant, model, data, ...
    module: Any                  # the trained SRLightningBase
    datamodule: Any              # SRDataModule: bicubic baseline scores
    ema: Any                     # EMA callback: the weights that are shipped
    run_info: Any                # RunInfo callback: training seconds (summed across resumes)
    history: Any                 # History callback: history.csv
    timer: Any                   # PhaseTimer callback: timings.json
    best: Any                    # ModelCheckpoint of the best val PSNR-Y
    logger: Any                  # MLflow logger
    config_hash: str
    manifest: str
    root: Path
    started: float               # time.monotonic() when `train` began
    extra: dict[str, Any] = field(default_factory=dict)  # more figures for metrics.json (the time budget's)


def write_outputs(run: FinishedRun) -> dict[str, Any]:
    """Write and log the run's outputs (rank 0); its metrics."""
    variant, module, dm, best = run.eff["variant"], run.module, run.datamodule, run.best
    models_dir = run.root / "models" / variant
    r = module.val_results
    run_id = run.logger.run_id
    metrics = {
        "val_psnr_y": r["val/psnr_y"], "val_ssim_y": r["val/ssim_y"],
        "bicubic_psnr_y": dm.bicubic_psnr_y, "bicubic_ssim_y": dm.bicubic_ssim_y,
        "delta": r["val/psnr_y"] - dm.bicubic_psnr_y,
        "best_val_psnr_y": float(best.best_model_score) if best.best_model_score is not None else r["val/psnr_y"],
        "steps": module.iteration, "seconds": round(run.run_info.seconds(), 1), "mlflow_run_id": run_id,
        **run.extra,
    }
    meta = {
        "variant": variant, "scale": module.scale, "channels": module.channels, "mlflow_run_id": run_id,
        "manifest_hash": run.manifest, "git_commit": ml.git_commit(run.root), "config_hash": run.config_hash,
        "val_psnr_y": metrics["val_psnr_y"], "val_ssim_y": metrics["val_ssim_y"],
        "bicubic_psnr_y": metrics["bicubic_psnr_y"], "steps": module.iteration, "ema": run.ema.enabled,
    }
    model_pt = save_model(models_dir / "model.pt", plain(run.eff["model"]["net"]), run.ema.ema_state_dict(module), meta)
    metrics_json = atomic_write_json(models_dir / "metrics.json", metrics)
    run.history.write()
    timings = run.timer.report()
    timings_json = atomic_write_json(models_dir / "timings.json", {"variant": variant, **timings})
    ml.log_outputs(
        run.logger, {"model": model_pt, "checkpoints": Path(best.best_model_path or ""), "metrics": metrics_json,
                     "history": run.history.path, "timings": timings_json},
        {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, module.iteration,
        timing.mlflow_metrics(timings),
    )
    print(timing.summary(variant, timings), flush=True)
    wall = time.monotonic() - run.started
    print(f"[{variant}] done: val PSNR-Y {metrics['val_psnr_y']:.2f} dB vs bicubic {metrics['bicubic_psnr_y']:.2f} "
          f"({metrics['delta']:+.2f}), SSIM-Y {metrics['val_ssim_y']:.4f}, {metrics['steps']} steps, "
          f"{metrics['seconds']:.0f} s training, {wall:.0f} s total -> {model_pt}", flush=True)
    return metrics
