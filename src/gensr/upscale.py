"""Production upscaler: `gensr upscale IN... -o OUTDIR --model model.onnx [--tile 256 --overlap 16]`.

Needs only numpy, Pillow and onnxruntime (no torch, Lightning or MLflow). The model's scale and
channels come from its gensr metadata. Large images go through overlapping tiles (origins on a
multiple of 8 pixels) feathered with linear ramps across the middle of each overlap into one
preallocated float32 output; peak memory is ~ output pixels x channels x 4 bytes plus one tile.

Input handling (documented in the README):
- RGB(A) / palette / CMYK / 16-bit: read by `gensr.io.read_image` (EXIF orientation applied).
- Alpha (RGBA, LA, palette transparency) is kept: the colour is upscaled by the model from the
  un-composited colour, the alpha plane separately with Pillow's bicubic, and re-attached.
- Grayscale input to an RGB model: replicated to RGB, and the output is written as grayscale
  (BT.601 luma of the model's output). Colour input to a 1-channel model is refused
  ("wrong channel count"): converting it silently would throw the colour away.
- 16-bit input is read at full precision and written as 8-bit PNG (the models are trained on
  8-bit data, and Pillow cannot write 16-bit RGB PNG).
Outputs are `<OUTDIR>/<input stem>.png`, written atomically. A failed image is reported and
skipped; the exit status is 1 when any image failed, 2 when the model itself is unusable.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from gensr.export import runtime
from gensr.io import BadImageError, list_images, read_image, rgb_to_luma, save_png

DEFAULT_MAX_PIXELS = 4096 * 4096  # input pixels; output memory ~ 12 x scale^2 bytes per input pixel
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


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


# Tile origins are multiples of this: a network with stride-2 (or 4, 8) stages only computes the
# same features for a tile as for the whole image when the tile keeps the image's sampling phase.
ALIGN = 8


def tile_spans(length: int, tile: int, overlap: int, align: int = ALIGN) -> list[tuple[int, int]]:
    """(start, size) of tiles covering [0, length): starts multiples of `align`, neighbours
    overlapping by >= `overlap`, spread evenly; the last tile runs to the end."""
    if tile <= 0 or length <= tile:
        return [(0, length)]
    step = tile - overlap - align  # room for rounding the starts down to the alignment
    if step <= 0:
        raise ValueError(f"tile {tile} too small for overlap {overlap} (needs tile > overlap + {align})")
    n = 1 + -(-(length - tile) // step)  # ceil: fewest tiles with enough overlap
    # Rounding down can merge starts (length just above tile): a merged tile simply runs longer.
    starts = sorted({round(i * (length - tile) / (n - 1)) // align * align for i in range(n)})
    return [(a, tile if i + 1 < len(starts) else length - a) for i, a in enumerate(starts)]


def _ramp(o: int, scale: int) -> np.ndarray:
    """Rising weights across an overlap of `o` input pixels, in output pixels: 0 over the outer
    quarter (next to the tile's edge, where zero padding makes the output least like the untiled
    one), a linear ramp across the middle half, 1 over the inner quarter."""
    n, margin = o * scale, (o // 4) * scale
    width = max(n - 2 * margin, 1)
    return np.clip((np.arange(n, dtype=np.float32) + 0.5 - margin) / width, 0.0, 1.0)


def _ramps(spans: list[tuple[int, int]], length: int, scale: int) -> list[np.ndarray]:
    """Per-tile 1-D weights in output pixels: ramps across each overlap with a neighbour, then
    normalised so the weights of all tiles sum to 1 at every position (partition of unity)."""
    weights = []
    for i, (a, size) in enumerate(spans):
        w = np.ones(size * scale, np.float32)
        if i > 0:  # ramp up over the overlap with the previous tile
            o = spans[i - 1][0] + spans[i - 1][1] - a
            w[: o * scale] = np.minimum(w[: o * scale], _ramp(o, scale))
        if i + 1 < len(spans):  # ramp down over the overlap with the next tile
            o = a + size - spans[i + 1][0]
            w[-o * scale :] = np.minimum(w[-o * scale :], _ramp(o, scale)[::-1])
        weights.append(w)
    total = np.zeros(length * scale, np.float32)
    for (a, _), w in zip(spans, weights):
        total[a * scale : a * scale + len(w)] += w
    return [w / total[a * scale : a * scale + len(w)] for (a, _), w in zip(spans, weights)]


def upscale_array(model, img: np.ndarray, scale: int, tile: int = 256, overlap: int = 16) -> np.ndarray:
    """HxWxC float32 [0, 1] -> (sH)x(sW)xC float32, tiled when larger than `tile` (0 = never).

    `model` maps an NCHW float32 batch to its SR. Tiles are added straight into one float32
    accumulator with separable weights that sum to 1 everywhere: no weight map, no tile copies.
    """
    h, w, c = img.shape
    out = np.zeros((h * scale, w * scale, c), np.float32)
    rows, cols = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    wy, wx = _ramps(rows, h, scale), _ramps(cols, w, scale)
    for (y0, th), ry in zip(rows, wy):
        for (x0, tw), rx in zip(cols, wx):
            lr = img[y0 : y0 + th, x0 : x0 + tw].transpose(2, 0, 1)[None]
            sr = model(np.ascontiguousarray(lr))[0].transpose(1, 2, 0)
            if sr.shape[:2] != (th * scale, tw * scale):
                raise RuntimeError(f"model returned {sr.shape[:2]} for a {th}x{tw} tile at scale {scale}")
            sr *= ry[:, None, None]
            sr *= rx[None, :, None]
            out[y0 * scale : (y0 + th) * scale, x0 * scale : (x0 + tw) * scale] += sr
    return out


def _quantise_inplace(out: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 without float64 temporaries (a 4K float64 copy alone is 200 MB)."""
    np.multiply(out, 255.0, out=out)
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _source_mode(path: Path) -> tuple[bool, bool]:
    """(is grayscale, has alpha) from the header, without decoding the pixels."""
    with Image.open(path) as im:
        alpha = im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (im.mode == "P" and "transparency" in im.info)
        return im.mode in _GREY_MODES, alpha


def _read_alpha_image(path: Path, grey: bool) -> tuple[np.ndarray, Image.Image]:
    """Un-composited colour (HxWx3 float) and the alpha plane of an image with transparency."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        rgba = np.asarray(im.convert("LA" if grey else "RGBA"))
    colour = rgba[:, :, :-1].astype(np.float32) / 255.0
    if grey:
        colour = np.repeat(colour, 3, axis=2)
    return colour, Image.fromarray(rgba[:, :, -1])


def upscale_file(
    model: SRModel, src: Path, dst: Path, tile: int, overlap: int, max_pixels: int | None
) -> Path:
    """Upscale one image file to `dst` (PNG). Raises BadImageError naming the file on bad input."""
    # read_image first: it validates (existence, format, corruption, pixel limit) with clear errors.
    img = read_image(src, model.channels, max_pixels)
    grey, has_alpha = _source_mode(src)
    if model.channels == 1 and not grey:
        raise BadImageError(
            src, "wrong channel count: colour image but the model takes 1 channel (grayscale); "
            "convert the image to grayscale first or use an RGB model"
        )
    alpha = None
    if has_alpha:
        img, alpha = _read_alpha_image(src, grey)
        if model.channels == 1:
            img = rgb_to_luma(img)[:, :, None].astype(np.float32)
    out = upscale_array(model, img, model.scale, tile, overlap)
    del img  # only the output accumulator stays alive from here on
    if grey and model.channels == 3:
        out = rgb_to_luma(out)[:, :, None].astype(np.float32)  # grey in, grey out
    pixels = _quantise_inplace(out)
    del out
    if alpha is not None:
        size = (pixels.shape[1], pixels.shape[0])
        big_alpha = np.asarray(alpha.resize(size, Image.Resampling.BICUBIC))[:, :, None]
        pixels = np.concatenate([pixels, big_alpha], axis=2)
    return save_png(dst, pixels)


def _inputs(items: Sequence[str]) -> list[Path]:
    """Files as given; folders expanded to the images inside them (sorted)."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        files.extend(list_images(p) if p.is_dir() else [p])
    return files


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gensr upscale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    p.add_argument("-o", "--out-dir", required=True, type=Path, help="folder for the PNG outputs")
    p.add_argument("--model", required=True, type=Path, help="gensr ONNX file (exports/models/<v>/model.onnx)")
    p.add_argument("--tile", type=int, default=256, help="tile side in input pixels; 0 = whole image (default 256)")
    p.add_argument("--overlap", type=int, default=16, help="tile overlap in input pixels (default 16)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse inputs with more pixels than this (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when an NVIDIA driver is present, else CPU")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tile < 0 or args.overlap < 0 or (args.tile and args.tile <= args.overlap + ALIGN):
        print(f"error: need --overlap >= 0 and --tile > overlap + {ALIGN} (or --tile 0), "
              f"got tile={args.tile}, overlap={args.overlap}", file=sys.stderr)
        return 2
    providers = {"auto": None, "cpu": ["CPUExecutionProvider"],
                 "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}[args.provider]
    try:
        model = SRModel(args.model, providers, args.threads)
    except runtime.ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        files = _inputs(args.inputs)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done, failed, seen = 0, [], {}
    t0 = time.perf_counter()
    for src in files:
        dst = args.out_dir / f"{src.stem}.png"
        try:
            if dst in seen:
                raise BadImageError(src, f"output {dst} would overwrite the output of {seen[dst]}")
            seen[dst] = src
            upscale_file(model, src, dst, args.tile, args.overlap, args.max_pixels)
            done += 1
            print(f"{src} -> {dst}")
        except BadImageError as e:  # one bad image never stops the others
            failed.append(str(e))
            print(f"failed: {e}", file=sys.stderr)
        except Exception as e:  # inference (ORT raises its own types) or write failure: this image only
            failed.append(f"{src}: {type(e).__name__}: {e}")
            print(f"failed: {src}: {type(e).__name__}: {e}", file=sys.stderr)
    summary = (f"upscaled {done} of {len(files)} images x{model.scale} with {model.meta.get('variant')} "
               f"({model.meta.get('precision')}, {', '.join(model.providers)}) in {time.perf_counter() - t0:.1f} s")
    print(summary + (f"; {len(failed)} failed" if failed else ""), file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
