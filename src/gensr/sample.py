"""`gensr sample IN... -m MODEL.sample.onnx -o OUTDIR -n 8 --seed 0 [--std-map] [--temperature T]`.

N seeded samples per image from a variational variant's sampling ONNX (`model.sample.onnx`, which
the export stage ships beside the deterministic `model.onnx`). Torch-free like `gensr upscale`,
whose reading, tiling, blending, writing and output-safety checks (`gensr.infer`) it shares.

Sample k of an image is decoded from T * eps_k (the `vae`'s draw from its prior; VariationalSR:
z = mu + T * sigma * eps_k), eps_k ~ N(0, I) drawn over the whole image's latent grid by a
generator seeded with (seed, k): the same seed gives the same samples, whatever the other images
or the tiling. Each tile is fed the slice of that noise at its latent offset (tile origins are
multiples of 8, the latent stride divides 8), so a tiled sample equals the untiled one within the
upscaler's blending tolerance (`gensr.infer.sampling`).

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

from gensr.errors import EXIT_BUG, EXIT_USER_ERROR, UserError, entry_point
from gensr.infer import arguments
from gensr.infer.batch import run_batch
from gensr.infer.files import list_inputs, make_out_dir, plan_outputs
from gensr.infer.sampling import DEFAULT_STD_FULL_SCALE, Sampler, SampleOptions, sample_file
from gensr.infer.session import PROVIDER_CHOICES
from gensr.infer.tiling import ALIGN


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
    p = arguments.build_parser("gensr sample", __doc__)  # gensr upscale's inputs, output, model, tiling, ...
    p.add_argument("-n", "--samples", type=_number(int, 1), default=8, help="samples per image (default 8)")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="noise seed, >= 0 (default 0)")
    p.add_argument("--temperature", type=_number(float, 0.0), default=1.0,
                   help="scales the posterior's sigma: 0 = the deterministic output (mu), default 1")
    p.add_argument("--std-map", action="store_true", help="also write OUTDIR/std/<stem>.png (needs -n >= 2)")
    p.add_argument("--std-full-scale", type=_number(float, 0.0, inclusive=False), default=DEFAULT_STD_FULL_SCALE,
                   help=f"std shown as white in the std map (default {DEFAULT_STD_FULL_SCALE})")
    return p


def _sample_dir(out_dir: Path, k: int, samples: int) -> Path:
    """OUTDIR/sample<k>, k zero-padded so that the folders sort in order."""
    return out_dir / f"sample{k:0{len(str(samples - 1))}d}"


def _prepare(args: argparse.Namespace) -> tuple[Sampler, SampleOptions, list[tuple[Path, list[Path]]], list[str]]:
    """Every check that can refuse the whole run, before any image is read or written."""
    if args.std_map and args.samples < 2:
        raise UserError(f"--std-map: needs -n >= 2 samples, got -n {args.samples}")
    image = arguments.image_options(args)
    files, failed, notes = list_inputs(args.inputs, args.out_dir)
    dirs = [_sample_dir(args.out_dir, k, args.samples) for k in range(args.samples)]
    dirs += [args.out_dir / "std"] if args.std_map else []
    plans = [plan_outputs(files, d) for d in dirs]  # refuses outputs that would land on inputs or others' files
    sampler = Sampler(args.model, PROVIDER_CHOICES[args.provider], args.threads)
    if args.tile and ALIGN % sampler.stride:
        raise UserError(f"--tile {args.tile}: this model's noise stride {sampler.stride} does not divide the "
                        f"tile alignment {ALIGN}; use --tile 0")
    for d, (plan, _) in zip(dirs, plans):
        make_out_dir(d, plan)
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    jobs = [(src, [plan[i][1] for plan, _ in plans]) for i, (src, _) in enumerate(plans[0][0])]
    opts = SampleOptions(args.seed, args.temperature, args.std_full_scale, image)
    return sampler, opts, jobs, failed + plans[0][1]


def main(argv: Sequence[str] | None = None) -> int:
    """The batch; a UserError (a bad model too) is one line and exit 2 via gensr.errors.entry_point."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (already reported in one line)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    sampler, opts, jobs, failed = _prepare(args)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    outputs = {src: dsts for src, dsts in jobs}
    total, t0 = len(jobs) + len(failed), time.perf_counter()

    def work(src: Path, label: Path) -> str:
        dsts = outputs[src][: args.samples]
        std_dst = outputs[src][-1] if args.std_map else None
        peak = sample_file(sampler, src, dsts, std_dst, opts)
        return f"{src} -> {label}" + (f", std map {std_dst} (max std {peak:.4f})" if std_dst else "")

    first = _sample_dir(args.out_dir, 0, args.samples)
    labels = [(src, args.out_dir / "sample*" / dsts[0].relative_to(first)) for src, dsts in jobs]
    done, bugs = run_batch(labels, work, failed, sampler.scale)
    summary = (f"sampled {done} of {total} images x{sampler.scale}, {args.samples} each (seed {args.seed}, "
               f"temperature {args.temperature:g}) with {sampler.meta.get('variant')} "
               f"({', '.join(sampler.providers)}) in {time.perf_counter() - t0:.1f} s")
    print(summary + (f"; {len(failed)} failed" if failed else ""), file=sys.stderr if failed else sys.stdout)
    return EXIT_BUG if bugs else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(entry_point(main)(sys.argv[1:]))
