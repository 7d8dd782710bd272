"""The command line `gensr upscale` and `gensr sample` share: inputs, output folder, model, tiling,
pixel limit, provider, threads. Defined once so the two commands cannot drift apart."""
from __future__ import annotations

import argparse
from pathlib import Path

from gensr.errors import EXIT_USER_ERROR, UserError
from gensr.infer.batch import DEFAULT_MAX_PIXELS, ImageOptions
from gensr.infer.session import PROVIDER_CHOICES
from gensr.infer.tiling import ALIGN, check_tiling


def int_in(low: int, high: int | None = None):
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


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the shared arguments; the command adds its own."""
    p = _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    p.add_argument("-o", "--out-dir", required=True, type=Path, help="folder for the PNG outputs")
    p.add_argument("-m", "--model", required=True, type=Path, help="gensr ONNX file (exports/models/<v>/model.onnx)")
    p.add_argument("--tile", type=int_in(0), default=256,
                   help=f"tile side in input pixels, > overlap + {ALIGN}; 0 = whole image (default 256)")
    p.add_argument("--overlap", type=int_in(0), default=16, help="tile overlap in input pixels (default 16)")
    p.add_argument("--max-pixels", type=int_in(1), default=DEFAULT_MAX_PIXELS,
                   help=f"refuse inputs with more pixels than this (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--provider", choices=tuple(PROVIDER_CHOICES), default="auto",
                   help="auto: CUDA when an NVIDIA driver is present, else CPU")
    p.add_argument("--threads", type=int_in(1, 1024), default=None, help="CPU threads (default: physical cores)")
    return p


def image_options(args: argparse.Namespace) -> ImageOptions:
    """The shared arguments checked (UserError naming the option) and gathered for upscale_file."""
    try:
        check_tiling(args.tile, args.overlap, ("--tile", "--overlap"))
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise UserError(f"--out-dir {args.out_dir}: exists and is not a folder")
    return ImageOptions(args.tile, args.overlap, args.max_pixels)
