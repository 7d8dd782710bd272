"""Production upscaler: `gensr upscale IN... -o OUTDIR --model model.onnx [--tile 256 --overlap 16]`.

Needs only numpy, Pillow and onnxruntime (no torch, Lightning or MLflow). The model's scale and
channels come from its gensr metadata; large images go through overlapping tiles (`gensr.infer.tiling`).

Inputs are read by `gensr.image_modes.decode_image` (every Pillow mode converted or refused by
name; 16-bit and float at full precision). Alpha is kept: the colour is upscaled by the model,
the alpha plane with Pillow's bicubic, and re-attached. Grey input to an RGB model is replicated and written as
grey; colour input to a 1-channel model is refused ("wrong channel count").

Safety (README, `gensr upscale`): before anything is read or written, every output path is checked
against every input (resolved path, symlink target, hard link) and against files it did not write
itself (outputs carry a PNG text chunk Software=gensr upscale); any hit refuses the whole run.
Outputs are `<OUTDIR>/<input stem>.png`, written atomically. A bad argument or unusable model:
one line, exit 2. A bad input: one line, skipped, the others processed, exit 1 at the end (3,
with the traceback, if one image met a bug).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gensr.errors import EXIT_BUG, EXIT_USER_ERROR, UserError
from gensr.infer import session as runtime
from gensr.image_modes import decode_image
from gensr.io import IMAGE_SUFFIXES, BadImageError, atomic_temp_target, rgb_to_luma, save_png, scan_images
from gensr.infer.tiling import ALIGN, quantise_inplace, upscale_array

DEFAULT_MAX_PIXELS = 4096 * 4096  # input pixels; output memory ~ 12 x scale^2 bytes per input pixel
MARK = {"Software": "gensr upscale"}  # on every output: only files carrying it are ever replaced


class SRModel:
    """An ONNX session plus its gensr metadata."""

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.session = runtime.make_session(self.path, providers, threads)
        self.meta = runtime.read_metadata(self.session, str(self.path))
        self.scale, self.channels = self.meta["scale"], self.meta["channels"]
        self.providers = self.session.get_providers()  # what actually runs, not what was asked

    def __call__(self, lr_nchw: np.ndarray) -> np.ndarray:
        return runtime.run(self.session, lr_nchw)


def upscale_file(
    model: SRModel, src: Path, dst: Path, tile: int, overlap: int, max_pixels: int | None, upscale=None
) -> Path:
    """Upscale one image file to `dst` (PNG). Raises BadImageError naming the file on bad input.
    `upscale(img) -> out` replaces the tiled model pass (`gensr sample` feeds each tile its noise)."""
    pic = decode_image(src, max_pixels)
    if model.channels == 1 and not pic.grey:
        raise BadImageError(
            src, "wrong channel count: colour image but the model takes 1 channel (grayscale); "
            "convert the image to grayscale first or use an RGB model"
        )
    img, alpha, grey = pic.colour, pic.alpha, pic.grey
    del pic
    if grey and model.channels == 3:
        img = np.repeat(img, 3, axis=2)
    out = upscale(img) if upscale else upscale_array(model, img, model.scale, tile, overlap)
    del img  # only the output accumulator stays alive from here on
    if grey and model.channels == 3:
        out = rgb_to_luma(out)[:, :, None].astype(np.float32)  # grey in, grey out
    pixels = quantise_inplace(out)
    del out
    if alpha is not None:
        size = (pixels.shape[1], pixels.shape[0])
        big = np.array(Image.fromarray(alpha).resize(size, Image.Resampling.BICUBIC), np.float32)
        pixels = np.concatenate([pixels, quantise_inplace(big)[:, :, None]], axis=2)
    return save_png(dst, pixels, MARK)


def _inputs(items: Sequence[str], out_dir: Path) -> tuple[list[Path], list[str]]:
    """Files as given, folders expanded to the images inside them (sorted), and one failure line
    per unusable entry. An output folder inside an input folder holds earlier outputs: not inputs."""
    files, failed, out = [], [], _real(out_dir)
    for item in items:
        p = Path(item)
        if not p.is_dir():
            files.append(p)  # decode_image reports a missing file, a broken link, ...
            continue
        found, unusable = scan_images(p)
        if out != _real(p):
            found = [f for f in found if not _real(f).is_relative_to(out)]
            unusable = [(f, why) for f, why in unusable if not _real(f).is_relative_to(out)]
        failed += [f"{f}: {why}" for f, why in unusable]
        if not found and not unusable:
            failed.append(f"{p}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += found
    return files, failed


def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))  # Path.resolve raises on a symlink loop; realpath does not


def _file_id(p: Path) -> tuple[int, int] | None:
    try:
        st = p.stat()  # follows links: a symlink and its target share the id, as hard links do
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _ours(p: Path) -> bool:
    """Whether `p` is a PNG this tool wrote (and may therefore replace)."""
    try:
        with Image.open(p) as im:
            return not p.is_symlink() and im.format == "PNG" and im.info.get("Software") == MARK["Software"]
    except Exception:  # a folder, unreadable, not an image: someone else's
        return False


def _plan(files: list[Path], out_dir: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(input, output) pairs, and a failure line for each input whose output name another took.
    Raises UserError, before anything is written, if an output would land on an input (same path,
    through a symlink or a hard link) or on an existing file that gensr upscale did not write."""
    ids: dict = {}
    for f in files:
        ids[_real(f)] = f
        if (fid := _file_id(f)) is not None:
            ids[fid] = f
    plan, failed, taken, clashes, foreign = [], [], {}, [], []
    for src in files:
        dst = out_dir / f"{src.stem}.png"
        if dst in taken:
            failed.append(f"{src}: its output {dst} is already the output of {taken[dst]}")
            continue
        taken[dst] = src
        hit = ids.get(_real(dst)) or ids.get(_file_id(dst))
        if hit is not None:
            clashes.append(f"output {dst} would overwrite the input {hit}")
        elif (dst.exists() or dst.is_symlink()) and not _ours(dst):
            foreign.append(f"output {dst} already exists and was not written by gensr upscale")
        plan.append((src, dst))
    for found, advice in ((clashes, "choose an --out-dir that holds none of the inputs"),
                          (foreign, "move it away or choose another --out-dir")):
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise UserError(f"{found[0]}{more}: {advice}; nothing was written")
    return plan, failed


def _remove_stale_temps(out_dir: Path, plan: list[tuple[Path, Path]]) -> None:
    """Temp files of this run's outputs left by a killed run (os.replace never ran for them)."""
    names = {dst.name for _, dst in plan}
    for entry in os.scandir(out_dir):
        if atomic_temp_target(entry.name) in names:
            Path(entry.path).unlink(missing_ok=True)


def _int_in(low: int, high: int | None = None):
    """argparse type: a whole number in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range (allowed: {allowed})")
        return value
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line; argparse's default prepends the whole usage
        self.exit(EXIT_USER_ERROR, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gensr upscale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    p.add_argument("-o", "--out-dir", required=True, type=Path, help="folder for the PNG outputs")
    p.add_argument("-m", "--model", required=True, type=Path, help="gensr ONNX file (exports/models/<v>/model.onnx)")
    p.add_argument("--tile", type=_int_in(0), default=256,
                   help=f"tile side in input pixels, > overlap + {ALIGN}; 0 = whole image (default 256)")
    p.add_argument("--overlap", type=_int_in(0), default=16, help="tile overlap in input pixels (default 16)")
    p.add_argument("--max-pixels", type=_int_in(1), default=DEFAULT_MAX_PIXELS,
                   help=f"refuse inputs with more pixels than this (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--provider", choices=tuple(runtime.PROVIDER_CHOICES), default="auto",
                   help="auto: CUDA when an NVIDIA driver is present, else CPU")
    p.add_argument("--threads", type=_int_in(1, 1024), default=None, help="CPU threads (default: physical cores)")
    return p


def _prepare(args: argparse.Namespace) -> tuple[SRModel, list[tuple[Path, Path]], list[str]]:
    """Every check that can refuse the whole run, in order, before any image is read or written."""
    if args.tile and args.tile <= args.overlap + ALIGN:
        raise UserError(f"--tile {args.tile}: must be 0 (whole image) or larger than --overlap + {ALIGN} "
                        f"= {args.overlap + ALIGN}")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise UserError(f"--out-dir {args.out_dir}: exists and is not a folder")
    files, failed = _inputs(args.inputs, args.out_dir)
    plan, dupes = _plan(files, args.out_dir)
    model = SRModel(args.model, runtime.PROVIDER_CHOICES[args.provider], args.threads)
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out-dir {args.out_dir}: cannot create it ({e.strerror})") from e
    _remove_stale_temps(args.out_dir, plan)
    return model, plan, failed + dupes


def run_batch(jobs: Sequence[tuple[Path, Path]], work: Callable[[Path, Path], str], failed: list[str],
              scale: int) -> tuple[int, int]:
    """`work(src, dst)` for each job, printing the line it returns. A bad image, a write failure or
    too little memory fails that image alone (one line, appended to `failed`); a bug prints its
    traceback and the batch goes on. Returns (done, bugs). `gensr sample` runs its batch with it."""
    done = bugs = 0
    for src, dst in jobs:
        n_failed = len(failed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                print(work(src, dst))
                done += 1
            except BadImageError as e:  # one bad image never stops the others
                failed.append(str(e))
            except OSError as e:  # writing the output: disk full, no permission, ...
                failed.append(f"{src}: cannot write {dst}: {e.strerror or e}")
            except MemoryError:
                failed.append(f"{src}: not enough memory for a x{scale} output: lower --max-pixels or --tile")
            except Exception:  # a bug (gensr's or onnxruntime's): its traceback, then the next image
                traceback.print_exc()
                bugs += 1
                failed.append(f"{src}: the traceback above is a bug, not a problem with this image")
            if len(failed) > n_failed:
                print(f"failed: {failed[-1]}", file=sys.stderr)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    return done, bugs


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (already reported in one line)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    try:
        model, plan, failed = _prepare(args)
    except (UserError, runtime.ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    for line in failed:
        print(f"failed: {line}", file=sys.stderr)
    total, t0 = len(plan) + len(failed), time.perf_counter()

    def work(src: Path, dst: Path) -> str:
        upscale_file(model, src, dst, args.tile, args.overlap, args.max_pixels)
        return f"{src} -> {dst}"

    done, bugs = run_batch(plan, work, failed, model.scale)
    summary = (f"upscaled {done} of {total} images x{model.scale} with {model.meta.get('variant')} "
               f"({model.meta.get('precision')}, {', '.join(model.providers)}) in {time.perf_counter() - t0:.1f} s")
    print(summary + (f"; {len(failed)} failed" if failed else ""), file=sys.stderr if failed else sys.stdout)
    return EXIT_BUG if bugs else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
