"""Static plots (matplotlib, Agg): training curves and the per-variant comparison, as PNG.

PNGs rather than DVC's Vega HTML so that the report renders offline; DVC shows them too (image
plots), next to `reports/plots/leaderboard.csv` (a bar chart template in dvc.yaml).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

from gensr.errors import BadInputError  # noqa: E402
from gensr.io import atomic_write_bytes  # noqa: E402

# history.csv columns worth a panel (the train stage's History callback), in display order.
CURVES = {
    "val_psnr_y": "validation PSNR-Y (dB)",
    "val_ssim_y": "validation SSIM-Y",
    "train_loss": "training loss",
}
_NOT_CURVES = {"step", "epoch", "lr", "seconds", "bicubic_psnr_y"}


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv -> {column: values}; non-numeric cells become NaN."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise BadInputError(f"{path}: not a readable history.csv ({e}); retrain that variant or restore "
                            "the file") from None
    cols: dict[str, list[float]] = {}
    for row in rows:
        for k, v in row.items():
            try:
                cols.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                cols.setdefault(k, []).append(math.nan)
    return cols


def _save(fig) -> bytes:
    buf = io.BytesIO()
    # No metadata: the same figure gives the same bytes.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _no_curves(out: Path, why: str) -> Path:
    # The PNG is a declared DVC output, so it always exists; it says why it holds no curves.
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=10)
    return atomic_write_bytes(out, _save(fig))


def training_curves(histories: dict[str, Path], out: Path) -> tuple[Path, bool]:
    """One panel per metric, one line per variant (x = optimiser step); (png, has_curves)."""
    data = {v: read_history(p) for v, p in histories.items() if p.is_file()}
    data = {v: d for v, d in data.items() if d.get("step")}
    present = {c for d in data.values() for c in d}
    cols = [c for c in CURVES if c in present]
    cols += sorted(c for c in present - set(CURVES) - _NOT_CURVES)[: max(0, 4 - len(cols))]
    if not data or not cols:
        return _no_curves(out, "no training history (models/<variant>/history.csv) to plot"), False
    fig, axes = plt.subplots(1, len(cols), figsize=(4.6 * len(cols), 3.6), squeeze=False)
    for ax, col in zip(axes[0], cols):
        for variant, d in sorted(data.items()):
            if col in d:
                ax.plot(d["step"], d[col], marker="o", markersize=3, label=variant)
        if col == "val_psnr_y":
            bic = [b for d in data.values() for b in d.get("bicubic_psnr_y", []) if not math.isnan(b)]
            if bic:
                ax.axhline(bic[-1], color="grey", linestyle="--", linewidth=1, label="bicubic")
        ax.set_title(CURVES.get(col, col), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return atomic_write_bytes(out, _save(fig)), True


def comparison_chart(rows: list[dict], set_id: str, out: Path) -> Path:
    """Bars per method on one set: PSNR-Y (fidelity), the texture distance and the HF detail ratio."""
    names = [r["variant"] for r in rows]
    fig, (a, t, b) = plt.subplots(1, 3, figsize=(14, 0.45 * len(rows) + 1.6))
    colors = ["#999999" if n == "bicubic" else "#3b75af" for n in names]
    a.barh(names, [r["psnr_y"] for r in rows], color=colors)
    lo = min(r["psnr_y"] for r in rows)
    a.set_xlim(lo - 1.0, max(r["psnr_y"] for r in rows) + 0.5)
    a.set_title(f"PSNR-Y on {set_id} (dB, higher is better)", fontsize=10)
    t.barh(names, [r["texture_distance"] for r in rows], color=colors)
    t.set_title("texture distance to HR (lower is better)", fontsize=10)
    b.barh(names, [r["hf_ratio"] for r in rows], color=colors)
    b.axvline(1.0, color="black", linestyle="--", linewidth=1)
    b.set_title("high-frequency detail ratio (1 = HR)", fontsize=10)
    for ax in (a, t, b):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return atomic_write_bytes(out, _save(fig))
