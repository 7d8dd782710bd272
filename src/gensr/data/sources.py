"""Where HR photos come from (embedded scikit-image photos or a folder), their identity and split.

Identity is a sha256: of the file bytes for a folder image, of the uint8 pixel array (shape +
C-order bytes) for an embedded photo, which has no file of its own. It names duplicates, seeds
each photo's degradation, and is written to the manifests.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gensr.errors import UserError
from gensr.io import IMAGE_SUFFIXES, BadImageError, read_image, rgb_to_luma, scan_images, sha256_file, to_float

# The real colour photographs bundled inside scikit-image (all load offline, nothing downloaded).
EMBEDDED = (
    "astronaut", "chelsea", "coffee", "rocket",
    "hubble_deep_field", "retina", "immunohistochemistry", "stereo_motorcycle",
)
SPLITS = ("train", "val", "test")


class DataError(UserError, ValueError):
    """The photos or the data.* config cannot make a dataset; the message names the file or key."""


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
    bad: bool = True   # an unusable photo (data.on_bad_image applies); False: not a photo, only listed

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
    """Every image below `folder` (nested), and every entry that is not one, with the reason.

    Links to files are read (DVC hashes their target); links to folders are not followed, as DVC
    does not hash through them and a change there would go unseen. Missing or imageless folder:
    DataError, always.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"data.folder {folder} {what}")
    files, unusable = scan_images(folder)
    skipped = [Skipped(p.relative_to(folder).as_posix(), reason) for p, reason in unusable]
    skipped += _not_photos(folder)
    if not files:
        seen = "; it holds " + ", ".join(sorted(s.source for s in skipped)[:5]) if skipped else ""
        raise DataError(f"data.folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}){seen}")
    rel = [p.relative_to(folder).as_posix() for p in files]
    names = [r.rsplit(".", 1)[0].replace("/", "__") for r in rel]
    count = Counter(names)
    # photo.jpg + photo.png in one folder: keep both, told apart by their extension.
    names = [r.replace("/", "__").replace(".", "_") if count[n] > 1 else n for n, r in zip(names, rel)]
    count = Counter(names)
    still = sorted(r for n, r in zip(names, rel) if count[n] > 1)
    if still:
        raise DataError(f"{folder}: these files would share an output name, rename one of each: {still}")
    found = []
    for path, r, name in zip(files, rel, names):
        try:
            size = path.stat().st_size
            sha = sha256_file(path) if size else None
        except OSError as e:  # e.g. no read permission: the photo is unusable, not the run
            skipped.append(Skipped(r, f"cannot read the file: {(e.strerror or str(e)).lower()}"))
            continue
        if sha is None:
            skipped.append(Skipped(r, "zero-byte file"))
            continue
        found.append(Candidate(name, r, str(path.resolve()), sha, size))
    return found, sorted(skipped, key=lambda s: s.source)


def _not_photos(folder: Path) -> list[Skipped]:
    """What scan_images leaves out: other file types, links to folders, folders that cannot be listed."""
    out: list[Skipped] = []

    def rel(path: str) -> str:
        return Path(path).relative_to(folder).as_posix()

    def unlistable(e: OSError) -> None:
        out.append(Skipped(rel(e.filename) + "/", f"cannot list the folder: {(e.strerror or str(e)).lower()}"))

    for root, dirs, files in os.walk(folder, onerror=unlistable):
        for d in dirs:
            path = os.path.join(root, d)
            if os.path.islink(path) and Path(d).suffix.lower() not in IMAGE_SUFFIXES:
                out.append(Skipped(rel(path) + "/", "symbolic link to a folder: not followed (DVC does not "
                                   "hash through it); point data.folder at the real folder or link the files"))
        for f in files:
            if Path(f).suffix.lower() in IMAGE_SUFFIXES:
                continue  # scan_images' domain
            path = os.path.join(root, f)
            broken = os.path.islink(path) and not os.path.exists(path)
            reason = "broken or looping symbolic link" if broken else (
                f"other file type ({Path(f).suffix or 'no extension'}): not one of {', '.join(sorted(IMAGE_SUFFIXES))}")
            out.append(Skipped(rel(path), reason, bad=False))
    return out


def _read_list(entries: str | Sequence[str] | None, root: Path) -> list[str]:
    """A split list: YAML list of entries, or the path of a text file with one entry per line."""
    if entries is None:
        return []
    if isinstance(entries, str):
        path = Path(entries) if Path(entries).is_absolute() else root / entries
        if not path.is_file():
            raise DataError(f"data.split.lists: split list file {path} does not exist")
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [str(e) for e in entries]


def assign_from_lists(
    candidates: Sequence[Candidate], lists: Mapping, root: Path
) -> tuple[dict[str, str], list[str]]:
    """name -> split from explicit lists (entries: output name, relative path, or path without
    extension). Returns the mapping and the sources of images listed nowhere (ignored)."""
    unknown = set(lists) - set(SPLITS)
    if unknown:
        raise DataError(f"data.split.lists has unknown splits {sorted(unknown)}; use {SPLITS}")
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
                raise DataError(f"data.split.lists.{split}: entry {entry!r} {what}")
            name = matches[0].name
            if split_of.get(name, split) != split:
                raise DataError(f"data.split.lists: {entry!r} is listed in both {split_of[name]} and {split}")
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
            raise DataError(f"data.split fractions must lie in [0, 1), got {frac}")
        return 0 if frac == 0 else max(1, int(n * frac + 0.5))  # round half up

    n_test, n_val = count(test_fraction), count(val_fraction)
    if n - n_test - n_val < 1:
        raise DataError(
            f"{n} usable images cannot make {n_val} val + {n_test} test + at least 1 train image; "
            "add images or lower data.split.val_fraction / test_fraction"
        )
    perm = np.random.default_rng(int(seed)).permutation(n)
    split_of = {}
    for rank, i in enumerate(perm):
        split_of[names[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split_of
