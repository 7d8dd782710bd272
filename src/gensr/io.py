"""Image and file I/O shared by every stage and by the torch-free upscaler (imports no torch).

Every file is written atomically (temp file in the same folder + os.replace), so an interrupted
run leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The process umask (read once: os.umask can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


class BadImageError(ValueError):
    """An input image that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save HxW or HxWxC uint8 (or float in [0, 1]) as PNG, atomically and byte-reproducibly."""
    if array.dtype != np.uint8:
        array = to_uint8(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buf = io.BytesIO()
    # PNG without timestamps/metadata: same pixels => same bytes.
    Image.fromarray(array).save(buf, format="PNG", compress_level=6)
    return atomic_write_bytes(path, buf.getvalue())


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 with rounding (the SR literature's quantisation)."""
    return np.clip(np.round(np.asarray(array, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def to_float(array: np.ndarray) -> np.ndarray:
    """uint8/uint16 image -> float32 in [0, 1]."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array.astype(np.float32)


def read_image(
    path: str | os.PathLike, channels: int = 3, max_pixels: int | None = None
) -> np.ndarray:
    """Read an image as HxWxC float32 in [0, 1], C = `channels` (3 = RGB, 1 = luma).

    Conversions (documented in the README): EXIF orientation is applied; palette, CMYK, grey
    and grey+alpha are converted to RGB; alpha is composited onto white (SR pairs have no alpha);
    16-bit images keep their precision until the float conversion.
    Raises BadImageError naming the file for empty, corrupt, truncated, oversized or non-image files.
    """
    path = Path(path)
    if not path.exists():
        raise BadImageError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise BadImageError(path, "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    raise BadImageError(
                        path, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}"
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                arr = _to_array(im, channels)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(path, f"decompression bomb: {e}") from e
    except UnidentifiedImageError as e:
        raise BadImageError(path, "not an image (unrecognised format)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(path, f"corrupt or truncated image: {e}") from e
    return arr


def _to_array(im: Image.Image, channels: int) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(im, dtype=np.float64)
        grey = grey / (65535.0 if grey.max(initial=0) > 255 or im.mode != "I" else 255.0)
        rgb = np.repeat(np.clip(grey, 0, 1)[:, :, None], 3, axis=2).astype(np.float32)
    elif im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = to_float(np.asarray(im.convert("RGBA")))
        alpha = rgba[:, :, 3:4]
        rgb = rgba[:, :, :3] * alpha + (1.0 - alpha)
    else:
        rgb = to_float(np.asarray(im.convert("RGB")))
    if channels == 1:
        return rgb_to_luma(rgb)[:, :, None].astype(np.float32)
    if channels != 3:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return np.ascontiguousarray(rgb, dtype=np.float32)


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma for grayscale-mode data (what PIL's 'L' conversion uses)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files below `folder`, nested, sorted; clear errors for a missing/empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(
            f"image folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return files
