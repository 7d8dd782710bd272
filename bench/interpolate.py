"""The perception-distortion curve of a GAN fine-tune by network interpolation (ESRGAN): the
generator (1 - s) * GAN + s * PSNR model, weight by weight (gensr.checkpoint.interpolate_weights),
scored on Set5/Set14 with the shared protocol for each PSNR share s: PSNR-Y (fidelity) against hf
ratio and texture distance (detail), so the share that meets a fidelity floor with the most
detail can be read off.

    .venv/bin/python bench/interpolate.py --benchmarks ../shared/benchmarks --scale 4 \
        --psnr bench/runs/x4_60_rerun/ae_res-full-x4/models/ae_res/model.pt \
        --gan bench/runs/x4_60_rerun/gan-full-x4/models/gan/model.pt --shares 0 0.2 0.4 0.6 1

Prints a markdown table; --out FILE.json keeps every figure.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from scoring import bicubic_upscaler, score, scored_sets, torch_upscaler  # noqa: E402


def blended_net(psnr_path: Path, gan_path: Path, share: float, scale: int):
    """The deployable net (re-parameterised branches fused) of the blend at PSNR share `share`."""
    from gensr.archs.blocks import reparameterize
    from gensr.checkpoint import interpolate_weights, load_model

    psnr, _ = load_model(psnr_path, scale=scale, channels=3, fuse=False)
    gan, _ = load_model(gan_path, scale=scale, channels=3, fuse=False)
    gan.load_state_dict(interpolate_weights(psnr.state_dict(), gan.state_dict(), share))
    return reparameterize(gan).eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmarks", type=Path, required=True, help="folder with Set5/ and Set14/")
    p.add_argument("--scale", type=int, required=True, choices=(2, 3, 4))
    p.add_argument("--psnr", type=Path, required=True, help="the PSNR model file the GAN was fine-tuned from")
    p.add_argument("--gan", type=Path, required=True, help="the GAN model file")
    p.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    p.add_argument("--eval", action="append", default=[], metavar="NAME=FOLDER")
    p.add_argument("--out", type=Path, help="write every figure to this JSON file")
    args = p.parse_args(argv)
    if any(not 0.0 <= s <= 1.0 for s in args.shares):
        p.error(f"--shares: each must be in [0, 1], got {args.shares}")

    sets = scored_sets(args.benchmarks, args.eval)
    rows = {"bicubic": score(bicubic_upscaler(args.scale), sets, args.scale)}
    for s in args.shares:
        rows[f"{s:g}"] = score(torch_upscaler(blended_net(args.psnr, args.gan, s, args.scale), args.scale),
                               sets, args.scale)
        print(f"[interpolate] PSNR share {s:g} scored", flush=True)
    bic = rows["bicubic"]
    head = " | ".join(f"{st.name} PSNR-Y (Δ) | hf | texture" for st in sets)
    print(f"\n| x{args.scale}, PSNR share | {head} |\n|---|" + "---|---|---|" * len(sets))
    for name, r in rows.items():
        cells = " | ".join(f"{r[st.name]['psnr_y']:.2f} ({r[st.name]['psnr_y'] - bic[st.name]['psnr_y']:+.2f}) | "
                           f"{r[st.name]['hf_ratio']:.2f} | {r[st.name]['texture_distance']:.4f}" for st in sets)
        print(f"| {name} | {cells} |")
    if args.out:
        from gensr.io import atomic_write_json

        atomic_write_json(args.out, {"scale": args.scale, "psnr": str(args.psnr), "gan": str(args.gan),
                                     "rows": rows})
    return 0


if __name__ == "__main__":
    from gensr.errors import entry_point  # a missing or mismatched model file: one line

    sys.exit(entry_point(main)(sys.argv[1:]))
