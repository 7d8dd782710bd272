"""The image sets evaluated: the prepared test split and any benchmark HR folders from params.

Each set yields `(gensr.data.pairs.Pair, lr_source)`: HxWxC float32 in [0, 1] with HR modcropped so
that HR = scale x LR exactly, and where its LR comes from. The split is read by the one reader of
prepared pairs (`gensr.data.pairs.read_split`); images are read one at a time (a generator), so a
large benchmark never sits in memory whole.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gensr.data.degradations import BicubicDegradation
from gensr.data.ops import modcrop
from gensr.data.pairs import Pair, read_split, split_folders
from gensr.errors import BadInputError, MissingInputError
from gensr.io import BadImageError, list_images, read_image, to_float, to_uint8


@dataclass(frozen=True)
class EvalSet:
    """One set of HR images; `kind` is "split" (prepared LR/HR folders) or "benchmark" (HR folder)."""

    id: str  # metric-name friendly: lower case, [a-z0-9_]
    hr_dir: Path
    kind: str

    def pairs(self, scale: int, channels: int, max_pixels: int | None = None) -> Iterator[tuple[Pair, str]]:
        """(pair, lr_source): "prepared", "LR_bicubic" (the standard files) or "degradation"."""
        if self.kind == "split":
            for pair in read_split(self.hr_dir.parent, scale, channels, max_pixels):
                yield pair, "prepared"
            return
        for hr_path in list_images(self.hr_dir):
            rel = hr_path.relative_to(self.hr_dir).with_suffix("")
            hr = modcrop(read_image(hr_path, channels, max_pixels), scale)
            lr_path = self.hr_dir.parent / "LR_bicubic" / f"X{scale}" / f"{rel}x{scale}.png"
            if lr_path.is_file():
                lr, source = read_image(lr_path, channels, max_pixels), "LR_bicubic"
            else:
                lr, source = bicubic_degrade(hr, scale), "degradation"
            want = (hr.shape[0] // scale, hr.shape[1] // scale)
            if lr.shape[:2] != want:
                raise BadImageError(
                    lr_path, f"LR is {lr.shape[1]}x{lr.shape[0]}, expected {want[1]}x{want[0]} "
                    f"(HR {hr_path.name} {hr.shape[1]}x{hr.shape[0]} / x{scale})"
                )
            yield Pair(rel.as_posix(), lr, hr), source


def bicubic_degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR from (modcropped) HR by the project's MATLAB-style bicubic degradation (benchmark protocol).

    Always bicubic, whatever `degradation` trains the models: benchmark rows are only comparable
    with the literature when their LR is the standard one.
    """
    lr, _ = BicubicDegradation(scale)(to_uint8(hr), np.random.default_rng(0))
    return to_float(lr)


def slug(name: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    if not s:
        raise BadInputError(f"evaluate.benchmarks: unusable set name {name!r}")
    return s


def eval_sets(
    root: Path, prepared_dir: str | Path, split: str, benchmarks: dict | None, on_missing: str = "fail"
) -> tuple[list[EvalSet], list[str]]:
    """The prepared split first, then each `evaluate.benchmarks` entry (name -> HR folder).

    A benchmark folder that does not exist is an error, or with `on_missing="warn"` skipped with
    a note (returned, for the report) — the default list names ../shared, which not every
    checkout has beside it.
    """
    if on_missing not in ("fail", "warn"):
        raise BadInputError(f"evaluate.on_missing_benchmark must be fail or warn, got {on_missing!r}")
    hr_dir, _ = split_folders((root / prepared_dir).resolve() / split)
    sets, notes = [EvalSet(slug(split), hr_dir, "split")], []
    for name, folder in (benchmarks or {}).items():
        path = Path(str(folder)).expanduser()
        path = path if path.is_absolute() else (root / path)
        if not path.is_dir():
            msg = f"evaluate.benchmarks.{name}: HR folder {path} does not exist"
            if on_missing == "fail":
                raise MissingInputError(msg)
            warnings.warn(msg + "; skipped", stacklevel=2)
            notes.append(msg + ", so that set was skipped.")
            continue
        sid = slug(name)
        if any(s.id == sid for s in sets):
            raise BadInputError(f"evaluate.benchmarks: set name {name!r} clashes with another set ({sid})")
        sets.append(EvalSet(sid, path.resolve(), "benchmark"))
    return sets, notes
