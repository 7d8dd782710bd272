"""Where a variational model is unsure: the per-pixel spread of its seeded samples, as a heat map.

A variational generator (`net.sample(lr, generator)` decodes a sampled latent) gives a different,
equally plausible SR image for every latent draw. The standard deviation over N seeded samples, per
pixel, shows where the LR leaves the answer open (texture, fine edges) and where it does not (flat
areas). The report puts this map beside the model's crop in the side-by-side pictures.

Only the crop is sampled: its LR window plus `context` LR pixels around it (the receptive field),
so eight samples cost about one full-image pass on a tiny window. The generator is seeded, so the
same seed gives the same map. The window is one forward pass, not a tiling: the production tiler
(`gensr.infer.tiling`) is for whole images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GREY = 255.0  # maps are reported in 8-bit grey levels


@dataclass(frozen=True)
class Draws:
    """How a map is sampled: `samples` draws from a generator seeded with `seed`, on the crop's LR
    window plus `context` LR pixels around it (evaluate.uncertainty.samples/seed, evaluate.tile_overlap)."""

    samples: int = 8
    seed: int = 0
    context: int = 16


def sample_std(net, lr: np.ndarray, scale: int, box: tuple[int, int, int], draws: Draws = Draws()) -> np.ndarray:
    """Per-pixel standard deviation (mean over channels, [0, 1] units) of `draws.samples` SR
    samples of the HR crop `box` = (top, left, side)."""
    import torch

    samples, seed, context = draws.samples, draws.seed, draws.context
    top, left, side = box
    h, w = lr.shape[:2]
    y0, x0 = max(top // scale - context, 0), max(left // scale - context, 0)
    y1, x1 = min(-(-(top + side) // scale) + context, h), min(-(-(left + side) // scale) + context, w)
    device = next(iter(net.parameters())).device
    x = torch.from_numpy(np.ascontiguousarray(lr[y0:y1, x0:x1].transpose(2, 0, 1)))[None].float().to(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    with torch.inference_mode():
        srs = torch.cat([net.sample(x, generator=gen).clamp(0, 1) for _ in range(samples)])
        std = srs.float().std(dim=0, unbiased=False).mean(dim=0).cpu().numpy()
    oy, ox = top - y0 * scale, left - x0 * scale
    return np.ascontiguousarray(std[oy : oy + side, ox : ox + side])


def display_max(std: np.ndarray) -> float:
    """Top of the heat map's range in grey levels: the map's 99th percentile, at least one grey level
    (so a nearly deterministic model shows black, not amplified rounding noise)."""
    return max(float(np.percentile(std, 99)) * GREY, 1.0)


def heat_map(std: np.ndarray, vmax: float) -> np.ndarray:
    """The map as an HxWx3 RGB image in [0, 1]: inferno colours, 0 (black) to `vmax` grey levels (yellow)."""
    from matplotlib import colormaps

    level = np.clip(std * GREY / vmax, 0.0, 1.0)
    return colormaps["inferno"](level)[:, :, :3].astype(np.float32)
