"""How each image mode Pillow opens becomes float32 in [0, 1], or is refused by name: the one
decoder behind `gensr.io.read_image` (prepare, evaluate, export) and `gensr upscale`.

- 8-bit modes (1, L, P, RGB, RGBX, CMYK, YCbCr and their alpha forms LA, La, PA, RGBA, RGBa):
  Pillow's own conversion to L/LA or RGB/RGBA, / 255; colour-key transparency (tRNS) becomes alpha.
- 16 bits per sample (I;16*, 16-bit RGB/RGBA/grey+alpha PNG and TIFF): / 65535, full precision.
  Pillow decodes 16-bit colour to 8 bits (the high byte), so the file is decoded a second time
  with the raw mode that unpacks the other byte (`_WIDE`) and the two are joined.
- I (32-bit integer: 16-bit PGM, signed 16-bit or 32-bit TIFF): values must lie in 0..65535 and
  are read as 16-bit data (/ 65535); anything else is refused.
- F (32-bit float TIFF): values are taken as [0, 1]; small overshoots (within FLOAT_SLACK) are
  clipped, NaN/inf or anything further out (e.g. 0..255 or 0..65535 data) is refused.
- LAB, HSV and any other mode: refused by name.
- EXIF orientation is applied; multi-frame files (animated GIF/PNG/WebP, multi-page TIFF) give
  their first frame with an ImageWarning naming the file (MPO, a camera JPEG with an embedded
  preview, gives its primary image silently).
"""
from __future__ import annotations

import os
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gensr.io import BadImageError, to_float

FLOAT_SLACK = 0.05  # float images may overshoot [0, 1] by this much (clipped); further is refused


class ImageWarning(UserWarning):
    """An image that is read, but not all of it (e.g. the first frame of an animation)."""


@dataclass(frozen=True)
class Picture:
    """A decoded image: `colour` HxWx1 (grey source) or HxWx3 float32 in [0, 1], not composited;
    `alpha` HxW float32 in [0, 1], None when the file has no transparency."""

    colour: np.ndarray
    alpha: np.ndarray | None

    @property
    def grey(self) -> bool:
        return self.colour.shape[2] == 1


def decode_image(path: str | os.PathLike, max_pixels: int | None = None) -> Picture:
    """The one image decoder (see the module docstring for what each mode becomes)."""
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    raise BadImageError(path, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
                frames = getattr(im, "n_frames", 1)
                if frames > 1 and im.format != "MPO":
                    warnings.warn(f"{path}: {frames} frames (animated or multi-page {im.format}); "
                                  "using the first", ImageWarning, stacklevel=2)
                return _decode(path, im)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(path, f"decompression bomb: {e}") from e
    except UnidentifiedImageError as e:
        raise BadImageError(path, "not an image Pillow can read (unrecognised format or variant)") from e
    except PermissionError as e:
        raise BadImageError(path, "cannot read the file: permission denied") from e
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise BadImageError(path, f"corrupt or truncated image: {e}") from e


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadImageError(path, "broken symbolic link" if path.is_symlink() else "file does not exist")
    if path.is_dir():
        raise BadImageError(path, "is a folder, not an image file")
    if not path.is_file():
        raise BadImageError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise BadImageError(path, "zero-byte file")


_NATIVE = "L" if sys.byteorder == "little" else "B"
# Raw modes Pillow decodes to 8 bits per sample, and the raw mode that yields the other byte of
# each sample (over the same bytes per pixel, so PNG/TIFF unfiltering is unchanged).
_WIDE = {f"{m};16{o}": f"{m};16{'B' if (_NATIVE if o == 'N' else o) == 'L' else 'L'}"
         for m in ("RGB", "RGBA") for o in "BLN"}
_WIDE["LA;16B"] = "RGBA"  # 16-bit grey+alpha PNG: "RGBA" unpacks its 4 bytes (L hi, L lo, A hi, A lo)
_GREY16 = ("I;16", "I;16B", "I;16L", "I;16N")
_COLOUR = ("RGB", "RGBX", "CMYK", "YCbCr", "P")
_WITH_ALPHA = ("LA", "La", "PA", "RGBA", "RGBa")


def _decode(path: Path, im: Image.Image) -> Picture:
    raw = _rawmode(im)
    if raw in _WIDE:
        return _decode_wide(path, im, raw)
    im.load()
    im = ImageOps.exif_transpose(im)
    mode, key = im.mode, im.info.get("transparency")
    if mode in _GREY16 or mode in ("I", "F"):
        values = np.asarray(im)
        grey = values / np.float32(65535) if mode != "F" else values
        grey = _check_range(path, mode, grey)
        alpha = _key_alpha(values[:, :, None], key) if mode in _GREY16 else None
        return Picture(grey[:, :, None].astype(np.float32), alpha)
    if mode in ("1", "L") or mode in ("LA", "La"):
        target = "LA" if mode in ("LA", "La") or key is not None else "L"
    elif mode in _COLOUR or mode in _WITH_ALPHA:
        target = "RGBA" if mode in _WITH_ALPHA or key is not None else "RGB"
    else:
        raise BadImageError(path, f"unsupported image mode {mode!r}: convert it to RGB first")
    arr = np.asarray(im if im.mode == target else im.convert(target))
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if target.endswith("A"):
        return Picture(to_float(arr[:, :, :-1]), to_float(arr[:, :, -1]))
    return Picture(to_float(arr), None)


def _decode_wide(path: Path, im: Image.Image, raw: str) -> Picture:
    key = im.info.get("transparency")
    with Image.open(path) as again:
        again.tile = [t._replace(args=_with_rawmode(t.args, _WIDE[raw])) for t in again.tile]
        other = np.asarray(_oriented(again)).astype(np.uint16)
    if raw == "LA;16B":
        values = other[:, :, 0::2] << 8 | other[:, :, 1::2]  # (L, A)
    else:
        values = np.asarray(_oriented(im)).astype(np.uint16) << 8 | other
    out = to_float(values)
    if values.shape[2] in (2, 4):
        return Picture(out[:, :, :-1], out[:, :, -1])
    return Picture(out, _key_alpha(values, key))


def _oriented(im: Image.Image) -> Image.Image:
    im.load()
    return ImageOps.exif_transpose(im)


def _rawmode(im: Image.Image) -> str | None:
    if not im.tile:
        return None
    args = im.tile[0].args
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else None)


def _with_rawmode(args: Any, raw: str) -> Any:
    return raw if isinstance(args, str) else (raw, *args[1:])


def _key_alpha(values: np.ndarray, key: Any) -> np.ndarray | None:
    """Alpha from a tRNS colour key (16-bit files: Pillow's conversions only know 8-bit keys)."""
    if key is None or isinstance(key, bytes):
        return None
    hit = np.all(values == np.asarray(key).reshape(-1)[: values.shape[2]], axis=2)
    return np.where(hit, np.float32(0), np.float32(1))


def _check_range(path: Path, mode: str, grey: np.ndarray) -> np.ndarray:
    """Integer data must fit 16 bits; float data is taken as [0, 1] (see the module docstring)."""
    if not np.isfinite(grey).all():
        raise BadImageError(path, "float image holds NaN or infinite values")
    lo, hi = (float(grey.min()), float(grey.max())) if grey.size else (0.0, 0.0)
    if mode == "I" and (lo < 0 or hi > 1):
        raise BadImageError(path, f"32-bit integer values span [{lo * 65535:.0f}, {hi * 65535:.0f}]; gensr "
                            "reads integer images as 16-bit data (0..65535): save it as 16-bit or as float in [0, 1]")
    if mode == "I" and 0 < hi <= 255 / 65535:
        warnings.warn(f"{path}: 32-bit integer image with values only up to {hi * 65535:.0f}, read as "
                      "16-bit data (0..65535) so it is nearly black; save 8-bit data as 8-bit", ImageWarning, 3)
    if mode == "F" and (lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK):
        scale = next((s for s in (255, 65535) if lo >= -FLOAT_SLACK and hi <= s * (1 + FLOAT_SLACK)), None)
        like = f" (looks like 0..{scale} data)" if scale else ""
        raise BadImageError(path, f"float values span [{lo:g}, {hi:g}]{like}; gensr reads float images "
                            "as [0, 1]: rescale it to [0, 1]")
    return np.clip(grey, 0, 1)
