"""`gensr sample IN... -m MODEL.sample.onnx -o OUTDIR -n 8 --seed 0 [--std-map] [--temperature T]`.

N seeded samples per image from a variational variant's sampling ONNX (`model.sample.onnx`, which
the export stage ships beside the deterministic `model.onnx`). Torch-free like `gensr upscale`,
whose reading, tiling, blending, writing and output-safety checks it reuses.

Sample k of an image is decoded from z = mu + T * sigma * eps_k, eps_k ~ N(0, I) drawn over the
whole image's latent grid by a generator seeded with (seed, k): the same seed gives the same
samples, whatever the other images or the tiling. Each tile is fed the slice of that noise at its
latent offset (tile origins are multiples of 8, the latent stride divides 8), so a tiled sample
equals the untiled one within the upscaler's blending tolerance.

Outputs, written atomically: `OUTDIR/sample<k>/<stem>.png` for k = 0..N-1 (each folder a
complete upscaled set) and, with --std-map, `OUTDIR/std/<stem>.png`: the per-pixel standard
deviation over the N samples (population std, mean over colour channels) as a grey image, black
= 0, white = --std-full-scale or more. Where it is bright the model is unsure of the detail.
Memory: the upscaler's, plus one sample's noise (noise_channels x input pixels / stride^2 floats)
and, with --std-map, two float32 buffers of the output's size.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gensr.errors import EXIT_BUG, EXIT_USER_ERROR, UserError, entry_point
from gensr.infer import session as runtime
from gensr.io import save_png
from gensr.infer.tiling import ALIGN, tile_spans, upscale_array
from gensr.upscale import MARK, _inputs, _plan, _remove_stale_temps, run_batch, upscale_file
from gensr.upscale import build_parser as upscale_parser

DEFAULT_STD_FULL_SCALE = 0.05  # std (in [0, 1] units) shown as white: 12.75 8-bit levels


class Sampler:
    """A sampling ONNX session (inputs lr, noise) plus its gensr metadata."""

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        self.session = runtime.make_session(path, providers, threads)
        self.meta = runtime.read_metadata(self.session, str(path), sampler=True)
        self.scale, self.channels, self.stride = self.meta["scale"], self.meta["channels"], self.meta["noise_stride"]
        self.providers = self.session.get_providers()

    def noise(self, h: int, w: int, seed: int, index: int, temperature: float) -> np.ndarray:
        """Sample `index`'s noise over the latent grid of an h x w image, scaled by the temperature."""
        eps = runtime.sample_noise(runtime.noise_shape(self.meta, 1, h, w), seed, index)
        return eps if temperature == 1.0 else np.multiply(eps, np.float32(temperature), out=eps)

    def __call__(self, lr_nchw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return runtime.run(self.session, lr_nchw, noise)


class _TiledSample:
    """One sample of one image, as the model `upscale_array` drives: it hands over tiles in
    `tile_spans` order, row by row, and each tile gets the noise at its latent offset. The order
    is checked against the pixels, so a change in the upscaler fails loudly, never silently."""

    def __init__(self, sampler: Sampler, img: np.ndarray, noise: np.ndarray, tile: int, overlap: int):
        h, w = img.shape[:2]
        self.sampler, self.img, self.noise = sampler, img, noise
        rows, cols = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
        self.tiles = iter([(y, th, x, tw) for y, th in rows for x, tw in cols])

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        y, th, x, tw = next(self.tiles)
        if lr.shape[2:] != (th, tw) or not np.array_equal(lr[0], self.img[y : y + th, x : x + tw].transpose(2, 0, 1)):
            raise RuntimeError(f"upscale_array no longer visits the tiles of tile_spans row by row (tile at {y},{x})")
        s = self.sampler.stride
        return self.sampler(lr, self.noise[:, :, y // s : y // s + -(-th // s), x // s : x // s + -(-tw // s)])


class _Moments:
    """Per-pixel running mean and variance (Welford: no catastrophic cancellation in float32)."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, x: np.ndarray) -> None:
        self.n += 1
        if self.mean is None:
            self.mean, self.m2 = x.copy(), np.zeros_like(x)
            return
        delta = x - self.mean
        self.mean += delta / self.n
        delta *= x - self.mean
        self.m2 += delta

    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.n)


def sample_file(sampler: Sampler, src: Path, dsts: list[Path], std_dst: Path | None, seed: int,
                temperature: float = 1.0, tile: int = 256, overlap: int = 16, max_pixels: int | None = None,
                std_full_scale: float = DEFAULT_STD_FULL_SCALE) -> float | None:
    """len(dsts) samples of `src` (sample k to dsts[k]) and the std map; returns the largest std."""
    moments = _Moments() if std_dst is not None else None
    for k, dst in enumerate(dsts):
        def one_sample(img: np.ndarray, k: int = k) -> np.ndarray:
            noise = sampler.noise(img.shape[0], img.shape[1], seed, k, temperature)
            out = upscale_array(_TiledSample(sampler, img, noise, tile, overlap), img, sampler.scale, tile, overlap)
            if moments is not None:
                moments.add(out)
            return out

        upscale_file(sampler, src, dst, tile, overlap, max_pixels, upscale=one_sample)
    if moments is None:
        return None
    std = moments.std().mean(axis=2)
    save_png(std_dst, np.clip(std / std_full_scale, 0.0, 1.0), MARK)
    return float(std.max())


def _number(kind: type, low: float, inclusive: bool = True):
    """argparse type: a number of `kind` >= low (> low unless inclusive)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not math.isfinite(value) or not (value >= low if inclusive else value > low):
            raise argparse.ArgumentTypeError(f"{text} is out of range (allowed: {'>=' if inclusive else '>'} {low})")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = upscale_parser()  # the same inputs, output folder, model, tiling, pixel limit, provider, threads
    p.prog, p.description = "gensr sample", __doc__
    p.add_argument("-n", "--samples", type=_number(int, 1), default=8, help="samples per image (default 8)")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="noise seed, >= 0 (default 0)")
    p.add_argument("--temperature", type=_number(float, 0.0), default=1.0,
                   help="scales the posterior's sigma: 0 = the deterministic output (mu), default 1")
    p.add_argument("--std-map", action="store_true", help="also write OUTDIR/std/<stem>.png (needs -n >= 2)")
    p.add_argument("--std-full-scale", type=_number(float, 0.0, inclusive=False), default=DEFAULT_STD_FULL_SCALE,
                   help=f"std shown as white in the std map (default {DEFAULT_STD_FULL_SCALE})")
    return p


def _prepare(args: argparse.Namespace) -> tuple[Sampler, list[tuple[Path, list[Path]]], list[str]]:
    """Every check that can refuse the whole run, before any image is read or written."""
    if args.std_map and args.samples < 2:
        raise UserError(f"--std-map: needs -n >= 2 samples, got -n {args.samples}")
    try:
        tile_spans(args.tile + 1, args.tile, args.overlap)  # the upscaler's own rule for --tile/--overlap
    except ValueError as e:
        raise UserError(f"--tile {args.tile}: {e}") from None
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise UserError(f"--out-dir {args.out_dir}: exists and is not a folder")
    files, failed = _inputs(args.inputs, args.out_dir)
    width = len(str(args.samples - 1))
    dirs = [args.out_dir / f"sample{k:0{width}d}" for k in range(args.samples)]
    dirs += [args.out_dir / "std"] if args.std_map else []
    plans = [_plan(files, d) for d in dirs]  # refuses outputs that would land on inputs or others' files
    sampler = Sampler(args.model, runtime.PROVIDER_CHOICES[args.provider], args.threads)
    if args.tile and ALIGN % sampler.stride:
        raise UserError(f"--tile {args.tile}: this model's noise stride {sampler.stride} does not divide the "
                        f"tile alignment {ALIGN}; use --tile 0")
    for d, (plan, _) in zip(dirs, plans):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"--out-dir {d}: cannot create it ({e.strerror})") from e
        _remove_stale_temps(d, plan)
    jobs = [(src, [plan[i][1] for plan, _ in plans]) for i, (src, _) in enumerate(plans[0][0])]
    return sampler, jobs, failed + plans[0][1]


def main(argv: Sequence[str] | None = None) -> int:
    """The batch; a UserError (a bad model too) is one line and exit 2 via gensr.errors.entry_point."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (already reported in one line)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    sampler, jobs, failed = _prepare(args)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    outputs = {src: dsts for src, dsts in jobs}
    total, t0 = len(jobs) + len(failed), time.perf_counter()

    def work(src: Path, label: Path) -> str:
        dsts = outputs[src][: args.samples]
        std_dst = outputs[src][-1] if args.std_map else None
        peak = sample_file(sampler, src, dsts, std_dst, args.seed, args.temperature, args.tile, args.overlap,
                           args.max_pixels, args.std_full_scale)
        return f"{src} -> {label}" + (f", std map {std_dst} (max std {peak:.4f})" if std_dst else "")

    labels = [(src, args.out_dir / "sample*" / dsts[0].name) for src, dsts in jobs]
    done, bugs = run_batch(labels, work, failed, sampler.scale)
    summary = (f"sampled {done} of {total} images x{sampler.scale}, {args.samples} each (seed {args.seed}, "
               f"temperature {args.temperature:g}) with {sampler.meta.get('variant')} "
               f"({', '.join(sampler.providers)}) in {time.perf_counter() - t0:.1f} s")
    print(summary + (f"; {len(failed)} failed" if failed else ""), file=sys.stderr if failed else sys.stdout)
    return EXIT_BUG if bugs else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(entry_point(main)(sys.argv[1:]))
