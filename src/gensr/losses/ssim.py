"""Differentiable SSIM loss (1 - mean SSIM) with the standard 11x11 Gaussian window (sigma 1.5).

Computed per channel on [0, 1] images (data range 1), 'valid' windows only — the same
conventions as `gensr.metrics.ssim` (numpy, used for reporting); this one is for gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gensr.losses.base import WeightedLoss


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    c = a.shape[1]
    size = min(window, a.shape[-2], a.shape[-1])
    size -= 1 - size % 2  # odd window that fits small patches
    g = _gaussian_window(size, sigma).to(a)
    # Separable blur, one group per channel.
    gx = g.view(1, 1, 1, size).expand(c, 1, 1, size)
    gy = g.view(1, 1, size, 1).expand(c, 1, size, 1)
    blur = lambda t: F.conv2d(F.conv2d(t, gx, groups=c), gy, groups=c)  # noqa: E731
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


class SSIMLoss(WeightedLoss):
    default_name = "ssim"

    def __init__(self, weight: float = 1.0, window: int = 11, sigma: float = 1.5, name: str | None = None,
                 active: tuple[float, float] = (0.0, 1.0)):
        super().__init__(weight, name, active)
        self.window, self.sigma = int(window), float(sigma)

    def compute(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return 1.0 - ssim_map(sr, hr, self.window, self.sigma).mean()
