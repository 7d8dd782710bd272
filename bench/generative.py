"""The PSNR model and its generative fine-tunes side by side: PSNR-Y / SSIM-Y (fidelity) and hf
ratio / texture distance / GMSD (detail: how much, how natural, how distorted) on Set5 and Set14
with the shared protocol, beside bicubic; plus one side-by-side crop of the methods on a Set14
picture (the evaluate stage's comparison picture, with the VAE's 8-sample uncertainty map).

    .venv/bin/python bench/generative.py --scale 2 --benchmarks ../shared/benchmarks \
        --model ae_res=bench/runs/ae_res-full-x2/models/ae_res/model.pt \
        --model gan=bench/runs/gan-full-x2/models/gan/model.pt \
        --model vae=bench/runs/vae-full-x2/models/vae/model.pt \
        [--crop-image comic] [--out bench/runs/generative-x2]

Writes OUT/generative.json (every figure) and OUT/crop-<image>.png; prints a markdown table.
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

SAMPLES = 8


def crop_picture(models: dict[str, Path], hr_dir: Path, image: str, scale: int, out: Path) -> Path:
    from PIL import Image

    from gensr.archs import is_variational
    from gensr.checkpoint import load_model
    from gensr.data.resize import bicubic_upscale
    from gensr.evaluate.compare import Layout, Panels, comparison_picture, detail_crop
    from gensr.evaluate.inference import upscale
    from gensr.evaluate.sets import EvalSet
    from gensr.evaluate.uncertainty import Draws, sample_std
    from gensr.metrics import psnr_y

    pairs = [p for p, _ in EvalSet("crop", hr_dir, "benchmark").pairs(scale, 3) if p.name == image]
    if not pairs:
        raise SystemExit(f"error: --crop-image {image}: not in {hr_dir}")
    pair = pairs[0]
    outputs = {"bicubic": bicubic_upscale(pair.lr, scale)}
    nets = {name: load_model(path, scale=scale, channels=3)[0].eval() for name, path in models.items()}
    outputs.update({name: upscale(net, pair.lr, scale) for name, net in nets.items()})
    psnrs = {k: psnr_y(v, pair.hr, scale) for k, v in outputs.items()}
    box = detail_crop(pair.hr, 96, scale, border=scale)
    # the VAE: per-pixel std over seeded samples, as the evaluate stage's report draws it
    cut = {name: sample_std(net, pair.lr, scale, box, Draws(samples=SAMPLES)) for name, net in nets.items()
           if is_variational(net)}
    sheet, _ = comparison_picture(pair.hr, pair.lr, Panels(outputs, psnrs, cut), scale,
                                  Layout(crop=96, columns=4), box=box)
    path = out / f"crop-{image}-x{scale}.png"
    Image.fromarray(sheet).save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--benchmarks", type=Path, default=ROOT.parent / "shared/benchmarks")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=MODEL_FILE")
    ap.add_argument("--crop-image", default="comic", help="the Set14 picture of the side-by-side crop")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    models = {}
    for entry in args.model:
        name, sep, path = entry.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"error: --model {entry!r}: expected NAME=MODEL_FILE of an existing file")
        models[name] = Path(path)
    out = (args.out or ROOT / "bench" / "runs" / f"generative-x{args.scale}").resolve()
    if out.is_relative_to(args.benchmarks.resolve()):  # never write beside the user's benchmark images
        raise SystemExit(f"error: --out {out}: inside --benchmarks {args.benchmarks}; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    sets = scored_sets(args.benchmarks, [])
    table = {"bicubic": score(bicubic_upscaler(args.scale), sets, args.scale)}
    for name, path in models.items():
        table[name] = score(torch_upscaler(path, args.scale), sets, args.scale)
    crop = crop_picture(models, args.benchmarks / "Set14" / "HR", args.crop_image, args.scale, out)
    (out / "generative.json").write_text(json.dumps({"scale": args.scale, "models": {k: str(v) for k, v in models.items()},
                                                     "table": table, "crop": str(crop)}, indent=1))
    print(f"| x{args.scale} | " + " | ".join(f"{s.name} PSNR-Y / SSIM-Y | hf | texture | GMSD" for s in sets) + " |")
    print("|---|" + "---|" * (4 * len(sets)))
    for name, per_set in table.items():
        cells = []
        for s in sets:
            r, b = per_set[s.name], table["bicubic"][s.name]
            gain = "" if name == "bicubic" else f" ({r['psnr_y'] - b['psnr_y']:+.2f})"
            cells += [f"{r['psnr_y']:.2f} / {r['ssim_y']:.4f}{gain}", f"{r['hf_ratio']:.2f}",
                      f"{r['texture_distance']:.4f}", f"{r['gmsd']:.4f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"crop: {crop}")
    return 0


if __name__ == "__main__":
    from gensr.errors import UserError

    try:
        sys.exit(main())
    except UserError as e:  # a model file of another scale, an unreadable image: one line
        sys.exit(f"error: {e}")
