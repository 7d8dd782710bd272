"""Pixel-wise reconstruction losses: L1, MSE, Charbonnier (all means over every element)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gensr.losses.base import WeightedLoss


class L1Loss(WeightedLoss):
    default_name = "l1"

    def compute(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(sr, hr)


class MSELoss(WeightedLoss):
    default_name = "mse"

    def compute(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(sr, hr)


class CharbonnierLoss(WeightedLoss):
    """sqrt(d^2 + eps^2): L2-like near zero (smooth gradient), L1-like for large errors."""

    default_name = "charbonnier"

    def __init__(self, weight: float = 1.0, eps: float = 1e-3, name: str | None = None,
                 active: tuple[float, float] = (0.0, 1.0)):
        super().__init__(weight, name, active)
        self.eps = float(eps)

    def compute(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sr - hr) ** 2 + self.eps**2).mean()
