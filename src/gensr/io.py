"""Image and file I/O shared by every stage and by the torch-free upscaler (imports no torch).

Every file is written atomically (temp file in the same folder + os.replace), so an interrupted
run leaves either the old file or the new one, never half of one.

`read_image` is the one image reader of prepare, evaluate, export and upscale; how each Pillow
mode is converted (or refused) is `gensr.image_modes`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; exclusive_output is then a no-op
    fcntl = None

import numpy as np
from PIL import Image

from gensr.errors import BadInputError, UserError

# The process umask (read once: os.umask can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}
OUTPUT_MARK = ".gensr-output"  # in every folder replace_dir swaps in: only marked folders are replaced


class MissingImagesError(UserError, FileNotFoundError):
    """An image folder a stage reads is absent or holds no images; the message names it."""


class OutputBusyError(UserError):
    """Another gensr process is writing the same output folder right now."""


class BadImageError(UserError, ValueError):
    """An input image that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@contextlib.contextmanager
def exclusive_output(final: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on output `final` while a stage writes it; a second process that asks
    for the same output is refused at once (OutputBusyError) instead of racing the first one for
    its staging folder or checkpoints. The lock is an advisory flock on `.<name>.lock` beside
    `final`, which the kernel drops when the holder exits however it exits: a killed run leaves at
    most the empty file, never a held lock. The holder removes the file before it lets go."""
    final = Path(final)
    if fcntl is None:
        yield
        return
    lock = final.with_name(f".{final.name}.lock")
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:  # an output path nobody can write (a typo, /proc, a read-only disk)
            raise BadInputError(f"{final}: cannot write this output there ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(
                f"{final}: another gensr process is writing it now ({what}); wait for that run to "
                "finish, or give this one another output path") from None
        # The previous holder may have removed the file between our open and our lock: a lock on
        # that orphaned inode excludes nobody, so take the file that is there now.
        held = os.fstat(fd)
        try:
            now = os.stat(lock)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held: nobody can lock this inode in between
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    """Content digest of a file, read in 1 MiB blocks (photos and model files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def atomic_temp_target(name: str) -> str | None:
    """The file an atomic_write_bytes temp named `name` was for (such temps outlive a kill -9)."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    return name[1:-4].rpartition(".")[0] or None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def aside_path(final: str | os.PathLike) -> Path:
    """Where replace_dir keeps the old folder while swapping (`.<name>.old`, a sibling)."""
    final = Path(final)
    return final.with_name(f".{final.name}.old")


def check_replaceable(final: str | os.PathLike, key: str, written_before: frozenset[str] = frozenset()) -> None:
    """Refuse (UserError naming `key`) an output folder that replace_dir would delete with something
    in it that gensr did not write: `data.out_dir=~/photos` or `=.` by mistake must not cost the
    user a folder. Replaceable: absent, empty, holding OUTPUT_MARK (which every folder replace_dir
    swaps in carries), or holding only `written_before` (the entries the stage wrote before it
    marked its outputs). Stages call it before they start, replace_dir again at the end."""
    final = Path(final)
    where = f"{final} ({key})"
    if final.name in ("", ".", ".."):
        raise UserError(f"{where}: not a folder a stage can write its output to; give a named folder")
    if final.is_symlink() and not final.exists():
        raise UserError(f"{where}: is a broken symbolic link; remove it or choose another path")
    if not final.exists():
        return
    if not final.is_dir():
        raise UserError(f"{where}: exists and is not a folder; move it away or choose another path")
    try:
        with os.scandir(final) as entries:
            names = {e.name for e in entries}
    except OSError as e:
        raise UserError(f"{where}: cannot read it ({e.strerror or e})") from None
    if OUTPUT_MARK not in names and not names <= written_before:
        raise UserError(
            f"{where}: holds files gensr did not write (no {OUTPUT_MARK} in it), and the stage replaces "
            "its output folder whole; move them away or choose another output path")


def replace_dir(new: str | os.PathLike, final: str | os.PathLike, written_before: frozenset[str] = frozenset()) -> Path:
    """Swap the complete folder `new` in for `final` (same file system): a kill -9 at any point
    leaves `final` as the old folder or the new one (absent only between two renames), never a
    mix of both or a half-deleted folder. The old one is renamed aside first, deleted last.
    Only a folder check_replaceable accepts is replaced; `new` gets the mark that makes it so."""
    new, final, old = Path(new), Path(final), aside_path(final)
    check_replaceable(final, "output folder", written_before)
    (new / OUTPUT_MARK).write_text("written by gensr: the stage that writes this folder replaces it whole\n")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def save_png(path: str | os.PathLike, array: np.ndarray, text: dict[str, str] | None = None) -> Path:
    """Save HxW or HxWxC uint8 (or float in [0, 1]) as PNG, atomically and byte-reproducibly;
    `text` adds tEXt chunks (e.g. the upscaler's mark on its outputs)."""
    if array.dtype != np.uint8:
        array = to_uint8(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    info = None
    if text:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buf = io.BytesIO()
    # PNG without timestamps: same pixels (and text) => same bytes.
    Image.fromarray(array).save(buf, format="PNG", compress_level=6, pnginfo=info)
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

    Alpha is composited onto white (SR pairs have no alpha); grey is replicated to RGB.
    Raises BadImageError naming the file for missing, empty, corrupt, truncated, oversized,
    unsupported or non-image files.
    """
    from gensr.image_modes import decode_image  # imports this module: loaded on first use

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    pic = decode_image(path, max_pixels)
    colour = pic.colour
    if pic.alpha is not None:
        alpha = pic.alpha[:, :, None]
        colour = colour * alpha + (1.0 - alpha)
    if channels == 1 and not pic.grey:
        colour = rgb_to_luma(colour)[:, :, None]
    elif channels == 3 and pic.grey:
        colour = np.repeat(colour, 3, axis=2)
    return np.ascontiguousarray(colour, dtype=np.float32)


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma for grayscale-mode data (what PIL's 'L' conversion uses)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def scan_images(folder: str | os.PathLike) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image-named entries below `folder`, nested, sorted: the regular files, and the others with
    why they cannot be read (a folder named like an image, a broken or looping link, a FIFO)."""
    files, unusable = [], []
    for p in sorted(Path(folder).rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            unusable.append((p, "is a folder, not an image file"))
        else:
            unusable.append((p, "broken or looping symbolic link" if p.is_symlink() else "not a regular file"))
    return files, unusable


def list_images(folder: str | os.PathLike) -> list[Path]:
    """All image files below `folder`, nested, sorted; clear errors for a missing/empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingImagesError(f"image folder {folder} does not exist or is not a folder")
    files = scan_images(folder)[0]
    if not files:
        raise MissingImagesError(
            f"image folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return files
