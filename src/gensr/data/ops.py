"""Primitive image operations: the HR crop every pair starts from, and the steps of the realistic
degradation chain (NumPy/SciPy/Pillow only).

Images are HxWxC float64 in [0, 1] (C = 1 or 3). Every function is deterministic given its
arguments; randomness is drawn by the caller (degradations.py) so that it can be recorded.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import correlate1d

from gensr.io import rgb_to_luma, to_uint8


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop HR so both sides are multiples of `scale` (top-left anchored, as in MATLAB code)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Bivariate Gaussian (Real-ESRGAN's `bivariate_Gaussian`): covariance R diag(sx², sy²) Rᵀ."""
    if size % 2 != 1:
        raise ValueError(f"blur kernel size must be odd, got {size}")
    r = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cov = r @ np.diag([sigma_x**2, sigma_y**2]) @ r.T
    inv = np.linalg.inv(cov)
    ax = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(ax, ax)
    xy = np.stack([xx, yy], axis=-1)
    k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", xy, inv, xy))
    return k / k.sum()


def blur(img: np.ndarray, kernel: np.ndarray, isotropic: bool) -> np.ndarray:
    """Filter with `kernel`, mirroring the borders (no dark frame from zero padding)."""
    r = kernel.shape[0] // 2
    if isotropic:
        # An isotropic Gaussian is separable: two 1-D passes instead of a k*k 2-D one.
        k1 = kernel.sum(axis=1)
        out = correlate1d(img, k1, axis=0, mode="reflect")
        return correlate1d(out, k1, axis=1, mode="reflect")
    from scipy.signal import oaconvolve  # imported here: it costs workers ~0.5 s to start

    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="symmetric")
    # Overlap-add FFT convolution: O(N log k) for kernels up to 21x21 on 2K photos.
    return oaconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))


def gaussian_noise(img: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise, `sigma` on the 0..255 scale; grey = same noise in every channel."""
    h, w, c = img.shape
    noise = rng.standard_normal((h, w, 1 if gray else c)) * (sigma / 255.0)
    return img + noise  # broadcasts a grey (H, W, 1) noise over the channels


def poisson_noise(img: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Shot noise of an 8-bit sensor (255 photons at white), its amplitude multiplied by `scale`.

    Grey noise is drawn on the luma and added to every channel, as Real-ESRGAN does.
    """
    base = img
    if gray and img.shape[2] == 3:
        base = rgb_to_luma(img)[:, :, None]
    base = np.clip(base, 0.0, 1.0)
    noisy = rng.poisson(base * 255.0) / 255.0
    return img + (noisy - base) * scale


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode/decode with libjpeg at `quality` (4:2:0 chroma as most cameras and the web)."""
    arr = to_uint8(img)
    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(
        buf, format="JPEG", quality=int(quality)
    )
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im, dtype=np.float64) / 255.0
    return out[:, :, None] if out.ndim == 2 else out
