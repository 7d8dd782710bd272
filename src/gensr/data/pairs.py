"""A prepared split as LR/HR pairs: the one reader of `<split>/{hr,lr}/<name>.png` for every stage.

Training, evaluation and export all read the prepare stage's output through `read_split`, so a
damaged split is refused the same way everywhere: a missing folder, an image without its partner
(in either folder) or an LR that is not HR / scale names the file and says to rerun prepare.
Images are read one at a time (a generator), so a large split never has to sit in memory whole.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gensr.io import BadImageError, MissingImagesError, list_images, read_image

_RERUN = "rerun the prepare stage (dvc repro -f prepare)"


class Pair(NamedTuple):
    """One image of a split: HxWxC arrays, HR = scale x LR exactly (float32 in [0, 1] as read;
    training keeps uint8 copies)."""

    name: str  # path below hr/ without its suffix (posix)
    lr: np.ndarray
    hr: np.ndarray


def split_folders(split_dir: Path) -> tuple[Path, Path]:
    """(hr/, lr/) of a prepared split; MissingImagesError naming the absent one otherwise."""
    hr_dir, lr_dir = split_dir / "hr", split_dir / "lr"
    missing = [d for d in (lr_dir, hr_dir) if not d.is_dir()]
    if missing:
        raise MissingImagesError(f"{missing[0]} does not exist: {split_dir} has no hr/ and lr/ folders; run the "
                                 "prepare stage first (dvc repro prepare)")
    return hr_dir, lr_dir


def _by_name(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in list_images(folder):
        name = path.relative_to(folder).with_suffix("").as_posix()
        if name in out:
            raise BadImageError(path, f"two images named {name} ({out[name].name} too); {_RERUN}")
        out[name] = path
    return out


def _check_partners(hrs: dict[str, Path], lrs: dict[str, Path], hr_dir: Path, lr_dir: Path) -> None:
    for name in sorted(hrs.keys() - lrs.keys()):
        lr = lr_dir / hrs[name].relative_to(hr_dir)
        raise MissingImagesError(f"{lr}: no LR image for {name}, {hrs[name]} has no LR partner; {_RERUN}")
    for name in sorted(lrs.keys() - hrs.keys()):
        hr = hr_dir / lrs[name].relative_to(lr_dir)
        raise MissingImagesError(f"{hr}: no HR image for {name}, {lrs[name]} has no HR partner; {_RERUN}")


def read_split(split_dir: Path, scale: int, channels: int, max_pixels: int | None = None) -> Iterator[Pair]:
    """Every pair of a prepared split, in name order. The folders are checked before the first pair."""
    hr_dir, lr_dir = split_folders(Path(split_dir))
    hrs, lrs = _by_name(hr_dir), _by_name(lr_dir)
    _check_partners(hrs, lrs, hr_dir, lr_dir)
    return _read(hrs, lrs, scale, channels, max_pixels)


def _read(hrs: dict[str, Path], lrs: dict[str, Path], scale: int, channels: int,
          max_pixels: int | None) -> Iterator[Pair]:
    for name in sorted(hrs):
        hr = read_image(hrs[name], channels, max_pixels)
        lr = read_image(lrs[name], channels, max_pixels)
        (h, w), (lh, lw) = hr.shape[:2], lr.shape[:2]
        if (h, w) != (lh * scale, lw * scale):
            raise BadImageError(
                lrs[name], f"LR is {lw}x{lh}, expected {w // scale}x{h // scale}: its HR {hrs[name].name} is {w}x{h}, "
                f"not x{scale} of it (scale {scale}); was the data prepared with another degradation.scale?")
        yield Pair(name, lr, hr)
