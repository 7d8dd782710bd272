"""MATLAB `imresize` in NumPy: the resize every SR paper's bicubic LR images were made with.

MATLAB resizes one dimension at a time. For each output pixel it computes, in 1-based
coordinates, the input position `u = x / scale + 0.5 * (1 - 1 / scale)`, takes the
`ceil(kernel_width) + 2` input pixels from `floor(u - kernel_width / 2)` on, weights them with
the kernel (when shrinking with antialiasing the kernel is stretched by `1 / scale`, so it
averages over the whole footprint instead of aliasing), normalises the weights to sum to 1 and
mirrors indices that fall outside the image (symmetric padding). We build exactly those weights
as a sparse (out x in) matrix and apply it with one sparse product per axis, in float64, height
first (MATLAB's order for equal scale factors).

uint8 input follows MATLAB's uint8 path: the result of *each* pass is rounded (half away from
zero) and clipped to uint8 before the next pass. That detail matters: with it, the LR of the
modcropped Set5/Set14 HR is bit-identical to the benchmarks' LR_bicubic files; rounding only once
at the end leaves ~15% of pixels off by one. Float input stays float64 throughout (not clipped).

`bicubic_upscale` is the SR tables' bicubic baseline, the one every part of gensr measures against.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import sparse

from gensr.io import to_float, to_uint8

Kernel = Callable[[np.ndarray], np.ndarray]


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution with a = -0.5 (MATLAB's "bicubic").
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    ) * ((ax > 1) & (ax <= 2))


def _triangle(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return (1.0 - ax) * (ax <= 1)


def _box(x: np.ndarray) -> np.ndarray:
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def _lanczos3(x: np.ndarray) -> np.ndarray:
    return np.sinc(x) * np.sinc(x / 3.0) * (np.abs(x) < 3)


# method -> (kernel, kernel width, antialias when shrinking); names follow MATLAB's imresize,
# with "area" = box + antialias (pixel averaging, what torch's "area" mode does).
METHODS: dict[str, tuple[Kernel, float, bool]] = {
    "nearest": (_box, 1.0, False),
    "bilinear": (_triangle, 2.0, True),
    "bicubic": (_cubic, 4.0, True),
    "area": (_box, 1.0, True),
    "lanczos3": (_lanczos3, 6.0, True),
}


def resize_matrix(in_len: int, out_len: int, method: str = "bicubic") -> sparse.csr_matrix:
    """The (out_len x in_len) matrix M with out = M @ in along one axis, as MATLAB computes it."""
    if method not in METHODS:
        raise ValueError(f"unknown resize method {method!r}; choose from {sorted(METHODS)}")
    if in_len < 1 or out_len < 1:
        raise ValueError(f"cannot resize {in_len} pixels to {out_len}")
    kernel, width, antialias = METHODS[method]
    scale = out_len / in_len
    if scale < 1 and antialias:
        kern: Kernel = lambda x: scale * kernel(scale * x)  # noqa: E731 - stretched kernel
        width = width / scale
    else:
        kern = kernel
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    w = kern(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    # Symmetric padding: index -1 -> 0, in_len -> in_len - 1, ... (mod 2 * in_len).
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    rows = np.repeat(np.arange(out_len), taps)
    keep = w.ravel() != 0
    m = sparse.coo_matrix(
        (w.ravel()[keep], (rows[keep], cols.ravel()[keep])), shape=(out_len, in_len)
    )
    return m.tocsr()  # duplicates (mirrored taps) are summed, as MATLAB's weights are


def _along_axis0(m: sparse.csr_matrix, img: np.ndarray) -> np.ndarray:
    flat = img.reshape(img.shape[0], -1)
    return np.asarray(m @ flat).reshape((m.shape[0], *img.shape[1:]))


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    method: str = "bicubic",
) -> np.ndarray:
    """Resize an HxW or HxWxC image by `scale` or to `size` = (height, width), MATLAB-style.

    uint8 in -> uint8 out, quantised after each pass as MATLAB does. Anything else -> float64,
    not clipped (cubic/lanczos overshoot; clip or quantise when saving).
    With `scale`, the output size is ceil(scale * input), MATLAB's rule.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    h, w = img.shape[:2]
    if size is None:
        size = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
    out_h, out_w = int(size[0]), int(size[1])
    as_uint8 = img.dtype == np.uint8
    x = np.asarray(img, dtype=np.float64)
    if out_h != h:
        x = _along_axis0(resize_matrix(h, out_h, method), x)
        x = _to_uint8_grid(x) if as_uint8 else x
    if out_w != w:
        x = np.swapaxes(_along_axis0(resize_matrix(w, out_w, method), np.swapaxes(x, 0, 1)), 0, 1)
        x = _to_uint8_grid(x) if as_uint8 else x
    return np.ascontiguousarray(x, dtype=np.uint8 if as_uint8 else np.float64)


def _to_uint8_grid(x: np.ndarray) -> np.ndarray:
    # MATLAB's double -> uint8 conversion: round half away from zero (values are >= 0 after the
    # clip), saturate. np.round would round half to even and miss MATLAB on exact .5 sums.
    return np.floor(np.clip(x, 0.0, 255.0) + 0.5)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline of every SR table: MATLAB `imresize(lr, scale, 'bicubic')` of the 8-bit
    LR on doubles (`im2double` first, as the papers' scripts do), quantised to 8 bits as a saved image.

    Training's validation, the evaluate report, the export sampler's check and bench/quality.py
    all use this one. uint8 in -> uint8 out; float in [0, 1] in -> float32 on the 8-bit grid out.
    """
    q = to_uint8(lr) if lr.dtype != np.uint8 else lr
    up = to_uint8(np.clip(imresize(q.astype(np.float64) / 255.0, scale=scale), 0.0, 1.0))
    return up if lr.dtype == np.uint8 else to_float(up)
