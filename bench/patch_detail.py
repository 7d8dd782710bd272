"""How much of a training batch holds detail to learn: the crops `PatchDataset` draws from a
prepared train split, for several `datamodule.min_detail` thresholds (gensr.training.datamodule).

Photos are mostly sky, walls and out-of-focus background, where bicubic interpolation is already
exact and a training step teaches nothing. For each threshold this prints, over `--samples` crops
drawn exactly as training draws them (the real dataset class, seed 0): the median bicubic PSNR-Y of
a crop (higher = flatter), the share of crops above 50 dB (nearly flat), and the mean squared error
bicubic leaves per crop relative to uniform crops (the signal a batch carries). The first table row
(0 = uniform crops) also gives, per candidate threshold, the share of uniform crops it would keep
and the share of the total bicubic error those crops hold.

    .venv/bin/python bench/patch_detail.py --prepared bench/runs/prepared-x2 --scale 2 --patch 128
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gensr.data.resize import bicubic_upscale  # noqa: E402
from gensr.metrics import psnr_y  # noqa: E402
from gensr.training.datamodule import PatchDataset, detail, load_pairs, to_numpy  # noqa: E402


def crop_stats(ds: PatchDataset, samples: int, scale: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(bicubic MSE on Y of each drawn crop, `detail` of its LR patch, ms to draw one crop); a border
    of 4 LR pixels is shaved, where bicubic's edge handling and not the content decides the error."""
    mse, det = np.empty(samples), np.empty(samples)
    b = 4 * scale
    t0 = time.perf_counter()
    items = [ds[(0, i)] for i in range(samples)]  # timed alone: what the loader process pays
    ms = 1e3 * (time.perf_counter() - t0) / samples
    for i, item in enumerate(items):
        lr, hr = (to_numpy(t) for t in item)
        sr = bicubic_upscale(lr, scale)
        mse[i] = 10.0 ** (-psnr_y(sr[b:-b, b:-b], hr[b:-b, b:-b], 0) / 10.0)
        det[i] = detail(np.round(lr * 255.0))
    return mse, det, ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", type=Path, required=True, help="a prepare stage's output (its train/ split)")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--patch", type=int, default=128, help="HR patch size (datamodule.patch_size)")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--samples", type=int, default=1500)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 8.0])
    ap.add_argument("--tries", type=int, default=8, help="datamodule.detail_tries")
    args = ap.parse_args()
    pairs = load_pairs(args.prepared / "train", args.scale, args.channels)
    print(f"{len(pairs)} training images of {args.prepared}, {args.samples} crops of {args.patch} HR pixels, "
          f"x{args.scale}, seed 0")

    def stats(t: float) -> tuple[np.ndarray, np.ndarray, float]:
        ds = PatchDataset(pairs, args.patch, args.scale, seed=0, min_detail=t, detail_tries=args.tries)
        return crop_stats(ds, args.samples, args.scale)

    uniform = stats(0.0)
    uniform_mse, uniform_det = uniform[:2]
    print("| min_detail | median bicubic PSNR-Y of a crop | crops > 50 dB | bicubic MSE per crop (x uniform) "
          "| ms to draw a crop |")
    print("|---|---|---|---|---|")
    for t in sorted(set(args.thresholds) | {0.0}):
        mse, _, ms = uniform if t == 0 else stats(t)
        psnr = -10.0 * np.log10(np.maximum(mse, 1e-12))
        print(f"| {t:g} | {np.median(psnr):.1f} dB | {np.mean(psnr > 50):.0%} | {mse.mean() / uniform_mse.mean():.2f} "
              f"| {ms:.2f} |")
    print("\nUniform crops a threshold keeps, and the share of the total bicubic error they hold:")
    for t in sorted(set(args.thresholds) - {0.0}):
        keep = uniform_det >= t
        print(f"  min_detail {t:g}: keeps {keep.mean():.0%} of the crops, "
              f"{uniform_mse[keep].sum() / uniform_mse.sum():.1%} of the error")


if __name__ == "__main__":
    main()
