"""Helpers for the data tests: tiny synthetic photo folders, bad photos and an in-process prepare run."""
from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from gensr.config import compose
from gensr.data.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]
_BASE: DictConfig | None = None


def photo_array(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random RGB uint8 image (distinct per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    img = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img)


def write_photos(folder: Path, n: int, h: int = 48, w: int = 64, prefix: str = "p") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i}.png"
        Image.fromarray(photo_array(h, w, seed=zlib.crc32(f"{prefix}{i}".encode()))).save(p)
        paths.append(p)
    return paths


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# name -> (file name, bytes maker, extra data config, counter key in the manifests)
BAD = {
    "truncated_png": ("cut.png", lambda: png_bytes(photo_array(seed=99))[:900], {}, "corrupt or truncated"),
    "truncated_jpeg": ("cut.jpg", lambda: jpeg_bytes(photo_array(seed=98))[:700], {}, "corrupt or truncated"),
    "zero_byte": ("empty.png", lambda: b"", {}, "zero-byte file"),
    "not_an_image": ("notes.jpg", lambda: b"these are my holiday notes, not a photo\n" * 20, {}, "not an image"),
    "too_small": ("tiny.png", lambda: png_bytes(photo_array(12, 40, seed=97)), {}, "too small"),
    "bomb": ("huge.png", lambda: png_bytes(photo_array(120, 120, seed=96)), {"max_pixels": 5000}, "too many pixels"),
}


def config(folder: Path, out_dir: Path, **data: object) -> DictConfig:
    """params-like config: the folder source, small images allowed, one in-process worker."""
    global _BASE
    if _BASE is None:
        _BASE = compose(["data=folder", "data.folder=unset"], root=ROOT)
    over = {"folder": str(folder), "out_dir": str(out_dir), "workers": 1, "min_side": 16,
            "split": {"val_fraction": 0.25, "test_fraction": 0.25}}
    extra_deg = data.pop("degradation", None)
    cfg = OmegaConf.merge(_BASE, {"data": {**over, **data}})
    if extra_deg is not None:
        cfg.degradation = extra_deg
    return cfg


def run(folder: Path, out_dir: Path, **data: object) -> dict:
    return prepare(config(folder, out_dir, **data), ROOT)


def manifests(out_dir: Path) -> dict[str, dict]:
    return {s: json.loads((out_dir / f"{s}.json").read_text()) for s in ("train", "val", "test")}


def record_of(out_dir: Path, source: str) -> dict:
    for m in manifests(out_dir).values():
        for rec in m["images"]:
            if rec["source"] == source:
                return rec
    raise KeyError(source)


def hr_of(out_dir: Path, source: str) -> np.ndarray:
    return np.asarray(Image.open(out_dir / record_of(out_dir, source)["hr"]))
