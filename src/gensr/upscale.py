"""Production upscaler: `gensr upscale IN... -o OUTDIR --model model.onnx [--tile 256 --overlap 16]`.

Needs only numpy, Pillow and onnxruntime (no torch, Lightning or MLflow). The model's scale and
channels come from its gensr metadata; large images go through overlapping tiles (`gensr.infer.tiling`);
each file is read, upscaled and written by `gensr.infer.batch`.

Inputs are read by `gensr.image_modes.decode_image` (every Pillow mode converted or refused by
name; 16-bit and float at full precision). Alpha is kept: the colour is upscaled by the model,
the alpha plane with Pillow's bicubic, and re-attached. Grey input to an RGB model is replicated and written as
grey; colour input to a 1-channel model is refused ("wrong channel count").

Safety (README, `gensr upscale`): before anything is read or written, every output path is checked
against every input (resolved path, symlink target, hard link) and against files it did not write
itself (outputs carry a PNG text chunk Software=gensr upscale); any hit refuses the whole run.
Outputs are `<OUTDIR>/<input stem>.png` (a folder's images keep their subfolders below
OUTDIR), written atomically. A bad argument or unusable model:
one line, exit 2. A bad input: one line, skipped, the others processed, exit 1 at the end (3,
with the traceback, if one image met a bug).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gensr.errors import EXIT_BUG, EXIT_USER_ERROR, entry_point
from gensr.infer import arguments
from gensr.infer.batch import ImageOptions, SRModel, run_batch, upscale_file
from gensr.infer.files import Plan, list_inputs, make_out_dir, plan_outputs
from gensr.infer.session import PROVIDER_CHOICES


def build_parser() -> argparse.ArgumentParser:
    return arguments.build_parser("gensr upscale", __doc__)


def _prepare(args: argparse.Namespace) -> tuple[SRModel, ImageOptions, Plan, list[str]]:
    """Every check that can refuse the whole run, in order, before any image is read or written."""
    opts = arguments.image_options(args)
    files, failed, notes = list_inputs(args.inputs, args.out_dir)
    plan, dupes = plan_outputs(files, args.out_dir)
    model = SRModel(args.model, PROVIDER_CHOICES[args.provider], args.threads)
    make_out_dir(args.out_dir, plan)
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    return model, opts, plan, failed + dupes


def main(argv: Sequence[str] | None = None) -> int:
    """The batch; a UserError (a bad model too) is one line and exit 2 via gensr.errors.entry_point."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (already reported in one line)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    model, opts, plan, failed = _prepare(args)
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    total, t0 = len(plan) + len(failed), time.perf_counter()

    def work(src: Path, dst: Path) -> str:
        upscale_file(model, src, dst, opts)
        return f"{src} -> {dst}"

    done, bugs = run_batch(plan, work, failed, model.scale)
    summary = (f"upscaled {done} of {total} images x{model.scale} with {model.meta.get('variant')} "
               f"({model.meta.get('precision')}, {', '.join(model.providers)}) in {time.perf_counter() - t0:.1f} s")
    print(summary + (f"; {len(failed)} failed" if failed else ""), file=sys.stderr if failed else sys.stdout)
    return EXIT_BUG if bugs else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(entry_point(main)(sys.argv[1:]))
