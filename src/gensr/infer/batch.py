"""One image file through an ONNX model, and the batch loop around it (`gensr upscale`, `gensr sample`).

Inputs are read by `gensr.image_modes.decode_image` (every Pillow mode converted or refused by
name; 16-bit and float at full precision). Alpha is kept: the colour is upscaled by the model, the
alpha plane with Pillow's bicubic, and re-attached. Grey input to an RGB model is replicated and
written as grey; colour input to a 1-channel model is refused ("wrong channel count"). Outputs
are PNGs carrying `files.MARK`, written atomically.
"""
from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gensr.image_modes import decode_image
from gensr.infer import session as runtime
from gensr.infer.files import MARK
from gensr.infer.tiling import quantise_inplace, upscale_array
from gensr.io import BadImageError, rgb_to_luma, save_png

DEFAULT_MAX_PIXELS = 4096 * 4096  # input pixels; output memory ~ 12 x scale^2 bytes per input pixel


class SRModel:
    """An ONNX session plus its gensr metadata; called like the tiler's model (NCHW in and out)."""

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.session = runtime.make_session(self.path, providers, threads)
        self.meta = runtime.read_metadata(self.session, str(self.path))
        self.scale, self.channels = self.meta["scale"], self.meta["channels"]
        self.providers = self.session.get_providers()  # what actually runs, not what was asked

    def __call__(self, lr_nchw: np.ndarray) -> np.ndarray:
        return runtime.run(self.session, lr_nchw)


@dataclass(frozen=True)
class ImageOptions:
    """How each input is read and tiled (the command-line --tile, --overlap, --max-pixels)."""

    tile: int = 256
    overlap: int = 16
    max_pixels: int | None = DEFAULT_MAX_PIXELS


def upscale_file(model, src: Path, dst: Path, opts: ImageOptions, upscale=None) -> Path:
    """Upscale one image file to `dst` (PNG). Raises BadImageError naming the file on bad input.

    `model` has `scale` and `channels` (SRModel, or gensr sample's Sampler); `upscale(img) -> out`
    replaces the tiled model pass (gensr sample feeds each tile its noise)."""
    pic = decode_image(src, opts.max_pixels)
    if model.channels == 1 and not pic.grey:
        raise BadImageError(
            src, "wrong channel count: colour image but the model takes 1 channel (grayscale); "
            "convert the image to grayscale first or use an RGB model"
        )
    img, alpha, grey = pic.colour, pic.alpha, pic.grey
    del pic
    if grey and model.channels == 3:
        img = np.repeat(img, 3, axis=2)
    out = upscale(img) if upscale else upscale_array(model, img, model.scale, opts.tile, opts.overlap)
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


def run_batch(jobs: Sequence[tuple[Path, Path]], work: Callable[[Path, Path], str], failed: list[str],
              scale: int) -> tuple[int, int]:
    """`work(src, dst)` for each job, printing the line it returns. A bad image, a write failure or
    too little memory fails that image alone (one line, appended to `failed`); a bug prints its
    traceback and the batch goes on. Returns (done, bugs)."""
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
