"""The super-resolution literature's metrics, one implementation for training, evaluation and export.

Protocol (../shared/benchmarks/README.md): both images quantised to 8 bits, PSNR and SSIM on the
Y channel of ITU-R BT.601 studio-range YCbCr, `scale` pixels shaved from every border, SSIM with
an 11x11 Gaussian window (sigma 1.5) over the valid region. NumPy only, so the torch-free parts of
the product can use it too. Images are HxWxC (C = 3 RGB or 1 grey) float in [0, 1] or uint8.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def quantise(img: np.ndarray) -> np.ndarray:
    """To float64 on the 0..255 grid, as a saved 8-bit image would be."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64)
    return np.clip(np.round(img.astype(np.float64) * 255.0), 0, 255)


def y_channel(img: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma in [16, 235] (0..255 scale); a 1-channel image is its own luma."""
    q = quantise(img)
    if q.ndim == 2:
        return q
    if q.shape[2] == 1:
        return q[:, :, 0]
    return 16.0 + q[:, :, :3] @ _Y_WEIGHTS / 255.0


def shave(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border > 0 else img


def _check(sr: np.ndarray, hr: np.ndarray) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: prediction {sr.shape} vs reference {hr.shape}")


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two arrays on the same scale; inf for identical inputs."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """PSNR on the Y channel after shaving `border` (= scale) pixels: the papers' figure."""
    _check(sr, hr)
    return psnr(shave(y_channel(sr), border), shave(y_channel(hr), border))


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """PSNR over all channels of the 8-bit images, after the same border shave."""
    _check(sr, hr)
    return psnr(shave(quantise(sr), border), shave(quantise(hr), border))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2.0
    w = np.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Mean SSIM of two 2-D arrays (Wang et al. 2004), Gaussian 11/1.5 window, valid region."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = _gaussian_window()
    r = len(w) // 2
    if min(a.shape) <= 2 * r:
        raise ValueError(f"image {a.shape} too small for an 11x11 SSIM window")

    def blur(x: np.ndarray) -> np.ndarray:
        y = correlate1d(correlate1d(x, w, axis=0, mode="reflect"), w, axis=1, mode="reflect")
        return y[r:-r, r:-r]  # valid region only: the border values are not real neighbourhoods

    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    _check(sr, hr)
    return ssim(shave(y_channel(sr), border), shave(y_channel(hr), border))

