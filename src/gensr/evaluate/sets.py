"""The image sets evaluated: the prepared test split and any benchmark HR folders from params.

Each set yields (name, HR, LR) triples of HxWxC float32 in [0, 1] with HR modcropped so that
HR = scale x LR exactly. Images are read one at a time (a generator), so a large benchmark never
sits in memory whole.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gensr.evaluate import BadInputError, MissingInputError
from gensr.io import BadImageError, list_images, read_image
from gensr.metrics import modcrop


@dataclass(frozen=True)
class Pair:
    name: str  # file stem (relative path without suffix for nested folders)
    hr: np.ndarray
    lr: np.ndarray
    lr_source: str  # "prepared", "LR_bicubic" or "degradation"


@dataclass(frozen=True)
class EvalSet:
    """One set of HR images; `kind` is "split" (prepared LR/HR folders) or "benchmark" (HR folder)."""

    id: str  # metric-name friendly: lower case, [a-z0-9_]
    hr_dir: Path
    lr_dir: Path | None
    kind: str

    def pairs(self, scale: int, channels: int, max_pixels: int | None = None) -> Iterator[Pair]:
        files = list_images(self.hr_dir)
        for hr_path in files:
            rel = hr_path.relative_to(self.hr_dir).with_suffix("")
            hr = read_image(hr_path, channels, max_pixels)
            if self.kind == "split":
                hr_c = modcrop(hr, scale)
                if hr_c.shape != hr.shape:
                    raise BadImageError(hr_path, f"prepared HR {hr.shape[:2]} is not a multiple of x{scale}")
                lr_path = _find_same_stem(self.lr_dir, rel, hr_path.suffix)
                lr, source = read_image(lr_path, channels, max_pixels), "prepared"
            else:
                hr = modcrop(hr, scale)
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
            yield Pair(rel.as_posix(), hr, lr, source)


def _find_same_stem(folder: Path | None, rel: Path, suffix: str) -> Path:
    assert folder is not None
    candidates = [folder / rel.with_suffix(suffix), folder / rel.with_suffix(".png")]
    for c in candidates:
        if c.is_file():
            return c
    raise MissingInputError(f"no LR image for {rel} in {folder} (prepared LR and HR names must match)")


def bicubic_degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR from (modcropped) HR by the project's MATLAB-style bicubic degradation (benchmark protocol).

    Always bicubic, whatever `degradation` trains the models: benchmark rows are only comparable
    with the literature when their LR is the standard one.
    """
    from gensr.data.degradations import BicubicDegradation  # prepare's one implementation
    from gensr.io import to_float, to_uint8

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
    prepared = (root / prepared_dir).resolve()
    hr_dir, lr_dir = prepared / split / "hr", prepared / split / "lr"
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise MissingInputError(
            f"{prepared / split} has no hr/ and lr/ folders: run the prepare stage first (dvc repro prepare)"
        )
    sets, notes = [EvalSet(slug(split), hr_dir, lr_dir, "split")], []
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
        sets.append(EvalSet(sid, path.resolve(), None, "benchmark"))
    return sets, notes
