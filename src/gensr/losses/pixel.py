"""Pixel-wise reconstruction losses: L1, MSE, Charbonnier (all means over every element).

`luma_weight` w blends in the same loss on BT.601 luma: (1 - w) * loss(RGB) + w * loss(Y). PSNR-Y,
what SR is scored on, ignores chroma, so a model that spends less of its capacity on chroma errors
can score higher; the RGB part (w < 1) keeps colours anchored. 0 (the default) is the plain RGB loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gensr.losses.base import WeightedLoss
from gensr.losses.frequency import luma


class PixelLoss(WeightedLoss):
    def __init__(self, weight: float = 1.0, name: str | None = None,
                 active: tuple[float, float] = (0.0, 1.0), luma_weight: float = 0.0):
        super().__init__(weight, name, active)
        if not 0.0 <= float(luma_weight) <= 1.0:
            raise ValueError(f"loss {self.name}: luma_weight must be in [0, 1], got {luma_weight}")
        self.luma_weight = float(luma_weight)

    def elementwise(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        w = self.luma_weight
        value = self.elementwise(sr, hr) if w < 1.0 else 0.0
        if w > 0.0:
            value = (1.0 - w) * value + w * self.elementwise(luma(sr), luma(hr))
        return value

    def extra_repr(self) -> str:
        luma_part = f", luma_weight={self.luma_weight}" if self.luma_weight else ""
        return super().extra_repr() + luma_part


class L1Loss(PixelLoss):
    default_name = "l1"

    def elementwise(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(sr, hr)


class MSELoss(PixelLoss):
    default_name = "mse"

    def elementwise(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(sr, hr)


class CharbonnierLoss(PixelLoss):
    """sqrt(d^2 + eps^2): L2-like near zero (smooth gradient), L1-like for large errors."""

    default_name = "charbonnier"

    def __init__(self, weight: float = 1.0, eps: float = 1e-3, name: str | None = None,
                 active: tuple[float, float] = (0.0, 1.0), luma_weight: float = 0.0):
        super().__init__(weight, name, active, luma_weight)
        self.eps = float(eps)

    def elementwise(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sr - hr) ** 2 + self.eps**2).mean()
