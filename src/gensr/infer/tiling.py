"""Tiled inference with feathered blending: the one tiler of gensr. `gensr upscale`, `gensr sample`,
the export stage's tiling check and evaluation (its torch generator as the model callable) all
run images through `upscale_array`. Numpy only (torch-free).

Large images go through overlapping tiles (origins on a multiple of 8 pixels) feathered with
linear ramps across the middle of each overlap into one preallocated float32 output; peak memory
is ~ output pixels x channels x 4 bytes plus one tile.
"""
from __future__ import annotations

import numpy as np

# Tile origins are multiples of this: a network with stride-2 (or 4, 8) stages only computes the
# same features for a tile as for the whole image when the tile keeps the image's sampling phase.
ALIGN = 8


def check_tiling(tile: int, overlap: int, names: tuple[str, str] = ("tile", "overlap")) -> None:
    """ValueError, naming the settings as `names` says, unless `tile` is 0 (whole image) or larger
    than `overlap` + ALIGN (room to round the tile starts down to the alignment)."""
    if overlap < 0:
        raise ValueError(f"{names[1]} {overlap}: must be >= 0")
    if tile < 0 or (tile and tile <= overlap + ALIGN):
        raise ValueError(f"{names[0]} {tile}: must be 0 (whole image) or larger than {names[1]} + {ALIGN} "
                         f"= {overlap + ALIGN}")


def tile_spans(length: int, tile: int, overlap: int, align: int = ALIGN) -> list[tuple[int, int]]:
    """(start, size) of tiles covering [0, length): starts multiples of `align`, neighbours
    overlapping by >= `overlap`, spread evenly; the last tile runs to the end."""
    if tile <= 0 or length <= tile:
        return [(0, length)]
    step = tile - overlap - align  # room for rounding the starts down to the alignment
    if step <= 0:
        raise ValueError(f"tile {tile} too small for overlap {overlap} (needs tile > overlap + {align})")
    n = 1 + -(-(length - tile) // step)  # ceil: fewest tiles with enough overlap
    # Rounding down can merge starts (length just above tile): a merged tile simply runs longer.
    starts = sorted({round(i * (length - tile) / (n - 1)) // align * align for i in range(n)})
    return [(a, tile if i + 1 < len(starts) else length - a) for i, a in enumerate(starts)]


def _ramp(o: int, scale: int) -> np.ndarray:
    """Rising weights across an overlap of `o` input pixels, in output pixels: 0 over the outer
    quarter (next to the tile's edge, where zero padding makes the output least like the untiled
    one), a linear ramp across the middle half, 1 over the inner quarter."""
    n, margin = o * scale, (o // 4) * scale
    width = max(n - 2 * margin, 1)
    return np.clip((np.arange(n, dtype=np.float32) + 0.5 - margin) / width, 0.0, 1.0)


def _ramps(spans: list[tuple[int, int]], length: int, scale: int) -> list[np.ndarray]:
    """Per-tile 1-D weights in output pixels: ramps across each overlap with a neighbour, then
    normalised so the weights of all tiles sum to 1 at every position (partition of unity)."""
    weights = []
    for i, (a, size) in enumerate(spans):
        w = np.ones(size * scale, np.float32)
        if i > 0:  # ramp up over the overlap with the previous tile
            o = spans[i - 1][0] + spans[i - 1][1] - a
            w[: o * scale] = np.minimum(w[: o * scale], _ramp(o, scale))
        if i + 1 < len(spans):  # ramp down over the overlap with the next tile
            o = a + size - spans[i + 1][0]
            w[-o * scale :] = np.minimum(w[-o * scale :], _ramp(o, scale)[::-1])
        weights.append(w)
    total = np.zeros(length * scale, np.float32)
    for (a, _), w in zip(spans, weights):
        total[a * scale : a * scale + len(w)] += w
    return [w / total[a * scale : a * scale + len(w)] for (a, _), w in zip(spans, weights)]


def upscale_array(
    model, img: np.ndarray, scale: int, tile: int = 256, overlap: int = 16, *, with_origin: bool = False
) -> np.ndarray:
    """HxWxC float32 [0, 1] -> (sH)x(sW)xC float32, tiled when larger than `tile` (0 = never).

    `model(batch)` maps an NCHW float32 batch (one tile) to its SR, as a writable float32 array.
    With `with_origin=True` it is called `model(batch, (y0, x0))`: the tile's top-left corner in
    input pixels, both multiples of ALIGN ((0, 0) for an untiled image), so a model with inputs
    tied to the image grid (gensr sample's noise) takes the slice at that position. Tiles are
    added straight into one float32 accumulator with separable weights that sum to 1 everywhere:
    no weight map, no tile copies. An image inside one tile goes through `model` whole, and its
    output comes back unchanged (weights exactly 1).
    """
    check_tiling(tile, overlap)
    h, w, c = img.shape
    out = np.zeros((h * scale, w * scale, c), np.float32)
    rows, cols = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    wy, wx = _ramps(rows, h, scale), _ramps(cols, w, scale)
    for (y0, th), ry in zip(rows, wy):
        for (x0, tw), rx in zip(cols, wx):
            lr = np.ascontiguousarray(img[y0 : y0 + th, x0 : x0 + tw].transpose(2, 0, 1)[None])
            sr = (model(lr, (y0, x0)) if with_origin else model(lr))[0].transpose(1, 2, 0)
            if sr.shape[:2] != (th * scale, tw * scale):
                raise RuntimeError(f"model returned {sr.shape[:2]} for a {th}x{tw} tile at scale {scale}")
            sr *= ry[:, None, None]
            sr *= rx[None, :, None]
            out[y0 * scale : (y0 + th) * scale, x0 * scale : (x0 + tw) * scale] += sr
    return out


def quantise_inplace(out: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 without float64 temporaries (a 4K float64 copy alone is 200 MB)."""
    np.multiply(out, 255.0, out=out)
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)
