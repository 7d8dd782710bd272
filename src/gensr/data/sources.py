"""Where HR photos come from (embedded scikit-image photos or a folder), their identity and split.

Identity is a sha256: of the file bytes for a folder image, of the uint8 pixel array (shape +
C-order bytes) for an embedded photo, which has no file of its own. It names duplicates, seeds
each photo's degradation, and is written to the manifests.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gensr.io import BadImageError, list_images, read_image, rgb_to_luma, to_float

# The real colour photographs bundled inside scikit-image (all load offline, nothing downloaded).
EMBEDDED = (
    "astronaut", "chelsea", "coffee", "rocket",
    "hubble_deep_field", "retina", "immunohistochemistry", "stereo_motorcycle",
)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Candidate:
    name: str          # output file stem, unique within a run
    source: str        # "skimage.data.<name>" or the path relative to data.folder
    path: str | None   # absolute file path (folder images only)
    sha256: str
    weight: int        # a size proxy (bytes or pixels) to schedule large photos first


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str
    split: str | None = None

    def as_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason, "split": self.split}


def embedded_array(name: str) -> np.ndarray:
    """One bundled photo as HxWx3 uint8 (stereo_motorcycle is a stereo pair: its left view)."""
    from skimage import data as skdata

    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded photo {name!r}; choose from {EMBEDDED}")
    img = getattr(skdata, name)()
    if isinstance(img, tuple):
        img = img[0]
    return np.ascontiguousarray(img, dtype=np.uint8)


def load_image(c: Candidate, channels: int, max_pixels: int | None) -> np.ndarray:
    """HxWxC float32 in [0, 1]: gensr.io.read_image for files, the same conversion for embedded."""
    if c.path is not None:
        return read_image(c.path, channels=channels, max_pixels=max_pixels)
    rgb = to_float(embedded_array(c.name))
    h, w = rgb.shape[:2]
    if max_pixels is not None and h * w > max_pixels:
        raise BadImageError(c.source, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    return rgb_to_luma(rgb)[:, :, None].astype(np.float32) if channels == 1 else rgb


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_pixels(arr: np.ndarray) -> str:
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def embedded_candidates() -> tuple[list[Candidate], list[Skipped]]:
    found, bad = [], []
    for name in EMBEDDED:
        source = f"skimage.data.{name}"
        try:
            arr = embedded_array(name)
        except Exception as e:  # a stripped scikit-image install: skip/fail like any bad photo
            bad.append(Skipped(source, f"cannot load the bundled photo: {type(e).__name__}: {e}"))
            continue
        found.append(Candidate(name, source, None, _sha256_pixels(arr), arr.size))
    return found, bad


def folder_candidates(folder: str | Path) -> tuple[list[Candidate], list[Skipped]]:
    """Every image below `folder` (nested). Missing/empty folder: FileNotFoundError, always."""
    folder = Path(folder)
    files = list_images(folder)
    rel = [p.relative_to(folder).as_posix() for p in files]
    names = [r.rsplit(".", 1)[0].replace("/", "__") for r in rel]
    clash = {n for n in names if names.count(n) > 1}
    # photo.jpg + photo.png in one folder: keep both, told apart by their extension.
    names = [r.replace("/", "__").replace(".", "_") if n in clash else n for n, r in zip(names, rel)]
    still = sorted({r for n, r in zip(names, rel) if names.count(n) > 1})
    if still:
        raise ValueError(f"{folder}: these files would share an output name, rename one of each: {still}")
    found, bad = [], []
    for path, r, name in zip(files, rel, names):
        size = path.stat().st_size
        if size == 0:
            bad.append(Skipped(r, "zero-byte file"))
            continue
        found.append(Candidate(name, r, str(path.resolve()), _sha256_file(path), size))
    return found, bad


def _read_list(entries: str | Sequence[str] | None, root: Path) -> list[str]:
    """A split list: YAML list of entries, or the path of a text file with one entry per line."""
    if entries is None:
        return []
    if isinstance(entries, str):
        path = Path(entries) if Path(entries).is_absolute() else root / entries
        if not path.is_file():
            raise FileNotFoundError(f"split list file {path} does not exist")
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [str(e) for e in entries]


def assign_from_lists(
    candidates: Sequence[Candidate], lists: Mapping, root: Path
) -> tuple[dict[str, str], list[str]]:
    """name -> split from explicit lists (entries: output name, relative path, or path without
    extension). Returns the mapping and the sources of images listed nowhere (ignored)."""
    unknown = set(lists) - set(SPLITS)
    if unknown:
        raise ValueError(f"data.split.lists has unknown splits {sorted(unknown)}; use {SPLITS}")
    keys: dict[str, list[Candidate]] = {}
    for c in candidates:
        for k in {c.name, c.source, c.source.rsplit(".", 1)[0]}:
            keys.setdefault(k, []).append(c)
    split_of: dict[str, str] = {}
    for split in SPLITS:
        for entry in _read_list(lists.get(split), root):
            matches = keys.get(entry, [])
            if len(matches) != 1:
                what = "matches no image" if not matches else f"matches {len(matches)} images"
                raise ValueError(f"data.split.lists.{split}: entry {entry!r} {what}")
            name = matches[0].name
            if split_of.get(name, split) != split:
                raise ValueError(f"{entry!r} is listed in both {split_of[name]} and {split}")
            split_of[name] = split
    ignored = [c.source for c in candidates if c.name not in split_of]
    return split_of, ignored


def find_duplicates(
    candidates: Sequence[Candidate], split_of: Mapping[str, str] | None = None
) -> tuple[list[Candidate], list[Skipped]]:
    """Keep one photo per sha256 (the first by split order, then name); report the others.

    With explicit split lists a duplicate in another split would leak test photos into
    training; the reason says so. Without lists, duplicates are removed before splitting.
    """
    order = {s: i for i, s in enumerate(SPLITS)}
    ranked = sorted(candidates, key=lambda c: (order.get((split_of or {}).get(c.name), 0), c.name))
    first: dict[str, Candidate] = {}
    kept, dups = [], []
    for c in ranked:
        other = first.setdefault(c.sha256, c)
        if other is c:
            kept.append(c)
            continue
        reason = f"duplicate of {other.source} (same sha256 {c.sha256[:12]}…)"
        split = None
        if split_of is not None:
            split, other_split = split_of[c.name], split_of[other.name]
            where = "across splits: would leak into evaluation" if split != other_split else "in the same split"
            reason += f"; listed in {split}, the original in {other_split} ({where})"
        dups.append(Skipped(c.source, reason, split))
    return sorted(kept, key=lambda c: c.name), dups


def split_by_seed(names: Sequence[str], seed: int, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Deterministic split: sorted names, permuted by `seed`; test first, then val, rest train."""
    names = sorted(names)
    n = len(names)

    def count(frac: float) -> int:
        if not 0 <= frac < 1:
            raise ValueError(f"split fractions must lie in [0, 1), got {frac}")
        return 0 if frac == 0 else max(1, int(n * frac + 0.5))  # round half up

    n_test, n_val = count(test_fraction), count(val_fraction)
    if n - n_test - n_val < 1:
        raise ValueError(
            f"{n} usable images cannot make {n_val} val + {n_test} test + at least 1 train image; "
            "add images or lower data.split.val_fraction / test_fraction"
        )
    perm = np.random.default_rng(int(seed)).permutation(n)
    split_of = {}
    for rank, i in enumerate(perm):
        split_of[names[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split_of
