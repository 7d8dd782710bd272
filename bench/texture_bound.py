"""How far can a generator lower the texture distance? An oracle that knows more than any model.

The PSNR model's output is (close to) the mean of all HR images its LR allows; what it misses,
the residual HR - SR, is the detail whose *phase* the LR does not fix. The best a generative model
can do is to add detail with the right local statistics at an unknown phase. This script builds
that output with knowledge no model has: the PSNR model's SR plus the *true* residual, its phase
randomised in overlapping windows of `--window` HR pixels (short-time Fourier transform with
square-root Hann windows at 50% overlap, which reconstructs exactly when the phase is kept: the
script prints that error). Each window then holds exactly HR's missing detail spectrum, colour
correlation included, at a random phase. Also scored: the true residual shifted by one pixel
(the right detail, one pixel off), bicubic, bicubic plus grey noise of HR's high-frequency energy
(the case issue 14's metric must refuse) and every --model given, on Set5/Set14 with the shared
protocol, with the shipped 3x3 texture distance and wider patches (`--metric-window`).

    .venv/bin/python bench/texture_bound.py --benchmarks ../shared/benchmarks --scale 2 \
        --model ae_res=bench/runs/detail4_60/ae_res-full-x2/models/ae_res/model.pt \
        --model gan=bench/runs/detail4_60/gan-full-x2/models/gan/model.pt

The first --model is the PSNR model the oracles start from; ratios are to its texture distance.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _window(n: int) -> np.ndarray:
    """2-D square-root periodic Hann: its square sums to 1 at 50% overlap in both directions."""
    w = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n))
    return np.outer(w, w)


def randomise_phase(x: np.ndarray, n: int, rng: np.random.Generator | None) -> np.ndarray:
    """x (HxWxC) with the phase of every n x n window replaced by a random one (the same for every
    channel) and the power kept; rng None keeps the phase (the exact-reconstruction check)."""
    h, w = x.shape[:2]
    hop, win = n // 2, _window(n)[:, :, None]
    pad_h, pad_w = hop + (-(h + hop) % hop), hop + (-(w + hop) % hop)
    xp = np.pad(x, ((hop, pad_h), (hop, pad_w), (0, 0)), mode="reflect")
    out = np.zeros_like(xp)
    for i in range(0, xp.shape[0] - n + 1, hop):
        for j in range(0, xp.shape[1] - n + 1, hop):
            spec = np.fft.fft2(xp[i:i + n, j:j + n] * win, axes=(0, 1))
            if rng is not None:  # the phase of a real noise's spectrum: Hermitian, so the result is real
                phase = np.exp(1j * np.angle(np.fft.fft2(rng.standard_normal((n, n)))))
                # A random phase spreads a window's energy evenly over it, and windows of
                # independent phases add in power, not in amplitude: the gain restores the power.
                spec = spec * phase[:, :, None] / np.sqrt(np.mean(win**2))
            out[i:i + n, j:j + n] += np.fft.ifft2(spec, axes=(0, 1)).real * win
    return out[hop:hop + h, hop:hop + w]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmarks", type=Path, required=True, help="folder with Set5/ and Set14/")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--model", action="append", required=True, metavar="NAME=FILE",
                   help="a model file; the first is the PSNR model the oracles start from")
    p.add_argument("--window", type=int, nargs="+", default=[8, 16, 32], help="HR pixels per phase window")
    p.add_argument("--metric-window", type=int, nargs="+", default=[3, 15],
                   help="patch sides of the texture distance to score with (3: the shipped metric)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if any(n < 4 or n % 2 for n in args.window):  # 50% overlap needs an even window
        p.error(f"--window: even numbers >= 4, got {args.window}")
    if any(w < 1 or w % 2 == 0 for w in args.metric_window):
        p.error(f"--metric-window: odd numbers >= 1, got {args.metric_window}")
    if any("=" not in m for m in args.model):
        p.error(f"--model: NAME=FILE, got {args.model}")

    from gensr.checkpoint import load_model
    from gensr.data.resize import bicubic_upscale
    from gensr.evaluate.inference import upscale
    from gensr.evaluate.sets import EvalSet, slug
    from gensr.evaluate.texture import hf_matched_noise, texture_distance
    from gensr.metrics import psnr_y

    models = [m.split("=", 1) for m in args.model]
    nets = {name: load_model(path, scale=args.scale, channels=3)[0].eval() for name, path in models}
    base_name = models[0][0]
    rng, s = np.random.default_rng(args.seed), args.scale
    rows, worst_exact = {}, 0.0
    for set_name in ("Set5", "Set14"):
        hr_dir = args.benchmarks / set_name / "HR"
        scores: dict[str, list[list[float]]] = {}
        for pair, _ in EvalSet(slug(set_name), hr_dir, "benchmark").pairs(s, 3):
            hr = np.asarray(pair.hr, np.float64)
            bic = bicubic_upscale(pair.lr, s).astype(np.float64)
            outs = {"bicubic": bic, "bicubic + noise of HR's high-frequency energy": hf_matched_noise(hr, bic, rng)}
            outs.update({name: upscale(net, pair.lr, s).astype(np.float64) for name, net in nets.items()})
            resid = hr - outs[base_name]
            for n in args.window:
                worst_exact = max(worst_exact, float(np.abs(randomise_phase(resid, n, None) - resid).max()))
                outs[f"{base_name} + true residual, random phase per {n} px"] = (
                    outs[base_name] + randomise_phase(resid, n, rng))
            outs[f"{base_name} + true residual shifted 1 px"] = outs[base_name] + np.roll(resid, 1, axis=1)
            for name, sr in outs.items():
                sr = np.clip(sr, 0.0, 1.0)
                scores.setdefault(name, []).append(
                    [psnr_y(sr, hr, s)] + [texture_distance(sr, hr, s, w) for w in args.metric_window])
        rows[set_name] = {k: np.mean(v, axis=0) for k, v in scores.items()}

    print(f"phase-kept reconstruction, max abs error: {worst_exact:.2e} (0 = the windows reconstruct exactly)")
    for i, w in enumerate(args.metric_window, start=1):
        print(f"\ntexture distance with {w}x{w} patches (ratio to {base_name})")
        print(f"| x{s} | Set5 PSNR-Y | Set5 texture (ratio) | Set14 PSNR-Y | Set14 texture (ratio) |")
        print("|---|---|---|---|---|")
        for name in rows["Set5"]:
            cells = []
            for set_name in ("Set5", "Set14"):
                row = rows[set_name][name]
                cells += [f"{row[0]:.2f}", f"{row[i]:.4f} ({row[i] / rows[set_name][base_name][i]:.2f})"]
            print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    from gensr.errors import entry_point  # a missing model file: one line, not a traceback

    sys.exit(entry_point(main)(sys.argv[1:]))
