"""One photo -> one LR/HR pair written to staging: the unit of work prepare spreads over workers.

Kept free of Hydra/DVC imports so that spawned workers start fast. A worker returns plain dicts
(exceptions with extra constructor arguments, like BadImageError, do not pickle back reliably).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from gensr.data.degradations import image_rng
from gensr.data.ops import modcrop
from gensr.data.sources import Candidate, load_image
from gensr.io import BadImageError, atomic_write_json, save_png, to_uint8


@dataclass(frozen=True)
class PairJob:
    candidate: Candidate
    degradation: Any      # a degradations.*Degradation (picklable: plain attributes)
    channels: int
    max_pixels: int | None
    min_side: int         # HR pixels each side must reach after modcrop (the training patch)
    staging: str          # folder receiving pairs/{hr,lr}/<name>.png and records/<name>.json


def record_path(staging: str | Path, name: str) -> Path:
    return Path(staging) / "records" / f"{name}.json"


def pair_paths(staging: str | Path, name: str) -> tuple[Path, Path]:
    base = Path(staging) / "pairs"
    return base / "hr" / f"{name}.png", base / "lr" / f"{name}.png"


def make_pair(job: PairJob) -> dict:
    """Read, modcrop, degrade, write both PNGs, then the record (last: it marks the pair done)."""
    c, deg = job.candidate, job.degradation
    # Pillow's own bomb guard follows the configured limit (None disables both); restored after,
    # as this also runs in the caller's process when workers=1.
    pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, job.max_pixels
    try:
        try:
            img = load_image(c, job.channels, job.max_pixels)
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit
        h0, w0 = img.shape[:2]
        hr = to_uint8(modcrop(img, deg.scale))
        h, w = hr.shape[:2]
        need = max(int(job.min_side), deg.scale)
        if h < need or w < need:
            raise BadImageError(
                c.source,
                f"too small: {w0}x{h0} (modcropped to {w}x{h} for x{deg.scale}) but every HR side "
                f"must be at least {need} pixels (data.min_side = the training patch size)",
            )
    except BadImageError as e:
        return {"bad": {"source": c.source, "reason": e.reason}}
    lr, params = deg(hr, image_rng(deg.seed, c.sha256))
    hr_path, lr_path = pair_paths(job.staging, c.name)
    save_png(hr_path, hr)
    save_png(lr_path, lr)
    record = {
        "name": c.name,
        "source": c.source,
        "source_sha256": c.sha256,
        "source_size": [h0, w0],
        "hr_size": [h, w],
        "lr_size": list(lr.shape[:2]),
        "channels": job.channels,
        "scale": deg.scale,
        "seed": deg.seed,
        "degradation": params,
    }
    atomic_write_json(record_path(job.staging, c.name), record)
    return {"ok": record}
