"""Does the VAE earn its place? Per image: bicubic, the deterministic output (z = 0) and N seeded
samples (z ~ N(0, I)) of a trained `vae` model file, PSNR-Y against HR (the shared protocol: Y,
`scale` pixels shaved), and the samples' mean per-pixel standard deviation in grey levels.

    .venv/bin/python bench/vae_samples.py [--model models/vae/model.pt] [--samples 8] \
        [--set Set5=../shared/benchmarks/Set5/HR] [--set test=data/prepared/test/hr]

LR inputs are the standard LR_bicubic files beside a benchmark's HR folder when present, else the
project's MATLAB bicubic of the HR (gensr.evaluate.sets, as the evaluate stage does).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models/vae/model.pt")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--set", action="append", metavar="NAME=HR_FOLDER",
                    help="default: Set5 of ../shared/benchmarks and the test split of data/prepared")
    args = ap.parse_args()
    import torch

    from gensr.checkpoint import load_model
    from gensr.data.resize import bicubic_upscale
    from gensr.evaluate.sets import EvalSet
    from gensr.metrics import psnr_y

    if not args.model.is_file():
        sys.exit(f"error: {args.model}: no such model file (run `make repro` first)")
    sets = args.set or [f"Set5={ROOT.parent / 'shared/benchmarks/Set5/HR'}", f"test={ROOT / 'data/prepared/test/hr'}"]
    net = load_model(args.model, channels=3)[0].eval()
    scale = int(net.scale)
    if not hasattr(net, "sample"):
        sys.exit(f"error: {args.model}: not a variational model (no sample())")
    to_np = lambda t: t[0].permute(1, 2, 0).clamp(0, 1).numpy()  # noqa: E731
    for entry in sets:
        name, _, folder = entry.partition("=")
        if not Path(folder).is_dir():
            sys.exit(f"error: --set {entry!r}: {folder}: no such folder")
        rows = []
        for pair, _ in EvalSet(name.lower(), Path(folder), "benchmark").pairs(scale, 3):
            lr = torch.from_numpy(pair.lr).permute(2, 0, 1)[None]
            with torch.no_grad():
                mean = to_np(net(lr))
                draws = [to_np(net.sample(lr, torch.Generator().manual_seed(s))) for s in range(args.samples)]
            bic = psnr_y(bicubic_upscale(pair.lr, scale), pair.hr, scale)
            ps = [psnr_y(d, pair.hr, scale) for d in draws]
            std = float(np.std(np.stack(draws), axis=0).mean() * 255)
            rows.append((bic, psnr_y(mean, pair.hr, scale), min(ps), float(np.mean(ps)), std))
            print(f"{name} {pair.name}: bicubic {bic:.2f}  z=0 {rows[-1][1]:.2f}  samples min {min(ps):.2f} "
                  f"mean {np.mean(ps):.2f}  std {std:.2f} grey levels", flush=True)
        r = np.array(rows).mean(0)
        print(f"{name} mean: bicubic {r[0]:.2f}  z=0 {r[1]:.2f}  worst sample {r[2]:.2f}  samples {r[3]:.2f}  "
              f"std {r[4]:.2f}; every sample >= bicubic: {all(x[2] >= x[0] for x in rows)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
