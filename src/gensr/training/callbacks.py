"""Training callbacks: checkpoint identity, history CSV + console lines, validation image grids,
and an atomic checkpoint writer (a SIGKILL mid-write never leaves a truncated last.ckpt)."""
from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from gensr.io import atomic_write_bytes, atomic_write_text, save_png, to_uint8


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(path, buf.getvalue())


class RunInfo(L.Callback):
    """Stamps every checkpoint with what it belongs to (`checkpoint["gensr"]`): variant, scale,
    channels, config hash, MLflow run id, iterations done of how many, and training seconds so far
    (summed across resumes)."""

    def __init__(self, info: dict[str, Any]):
        self.info = dict(info)
        self.seconds_before = 0.0
        self._t0 = time.monotonic()

    @property
    def state_key(self) -> str:
        return "RunInfo"

    def on_fit_start(self, trainer, pl_module) -> None:
        self._t0 = time.monotonic()

    def seconds(self) -> float:
        return self.seconds_before + time.monotonic() - self._t0

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        run_id = getattr(trainer.logger, "run_id", None) if trainer.is_global_zero else None
        checkpoint["gensr"] = {**self.info, "mlflow_run_id": run_id, "iteration": pl_module.iteration,
                               "seconds": self.seconds()}

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds_before = float(state_dict.get("seconds", 0.0))


HISTORY_FIELDS = ["step", "epoch", "train_loss", "val_psnr_y", "val_ssim_y", "bicubic_psnr_y", "lr", "seconds"]


class History(L.Callback):
    """One row per validation -> `history.csv` (DVC plots, x = step) and a console line."""

    def __init__(self, path: Path, variant: str, total_steps: int, run_info: RunInfo):
        self.path, self.variant, self.total, self.run_info = Path(path), variant, total_steps, run_info
        self.rows: list[dict[str, Any]] = []

    @property
    def state_key(self) -> str:
        return "History"

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not pl_module.val_results:
            return
        r = pl_module.val_results
        losses = pl_module.epoch_loss
        opt = trainer.optimizers[0] if trainer.optimizers else None
        row = {
            "step": pl_module.iteration,
            "epoch": trainer.current_epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_psnr_y": r["val/psnr_y"],
            "val_ssim_y": r["val/ssim_y"],
            "bicubic_psnr_y": r.get("val/bicubic_psnr_y", float("nan")),
            "lr": opt.param_groups[0]["lr"] if opt else float("nan"),
            "seconds": self.run_info.seconds(),
        }
        pl_module.epoch_loss = []
        self.rows.append(row)
        if trainer.is_global_zero:
            self.write()
            print(
                f"[{self.variant}] step {row['step']}/{self.total}  loss {row['train_loss']:.4f}  "
                f"val PSNR-Y {row['val_psnr_y']:.2f} dB (bicubic {row['bicubic_psnr_y']:.2f})  "
                f"SSIM-Y {row['val_ssim_y']:.4f}  {row['seconds']:.0f} s",
                flush=True,
            )

    def write(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in self.rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write_text(self.path, buf.getvalue())

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]


def image_grid(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Rows of equally sized HxWxC uint8 tiles -> one image with white gaps."""
    h, w, c = rows[0][0].shape
    n = len(rows[0])
    out = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, c), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            out[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = tile
    return out


def centre(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return img[y : y + size, x : x + size]


class ImageGrid(L.Callback):
    """Every `every_n` validations: a bicubic | SR | HR grid of the first validation images,
    logged to the MLflow run as `val_images/step_XXXXXX.png`."""

    def __init__(self, every_n: int = 1, crop: int = 128):
        self.every_n, self.crop, self.count = max(int(every_n), 1), int(crop), 0

    @property
    def state_key(self) -> str:
        return "ImageGrid"

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not pl_module.val_samples:
            return
        self.count += 1
        if self.count % self.every_n or not trainer.is_global_zero:
            return
        logger, dm = trainer.logger, trainer.datamodule
        if logger is None or not hasattr(logger, "run_id"):
            return
        idx = sorted(pl_module.val_samples)
        size = min(self.crop, *(min(dm.val_pairs[i].hr.shape[:2]) for i in idx))
        rows = [[centre(dm.bicubic[i], size), centre(to_uint8(pl_module.val_samples[i]), size),
                 centre(dm.val_pairs[i].hr, size)] for i in idx]
        with tempfile.TemporaryDirectory() as tmp:
            path = save_png(Path(tmp) / f"step_{pl_module.iteration:06d}.png", image_grid(rows))
            logger.experiment.log_artifact(logger.run_id, str(path), "val_images")

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = int(state_dict.get("count", 0))
