"""Losses on latent maps: KL to N(0, I) (VAE) and the L1 activity penalty (sparse AE)."""
from __future__ import annotations

import torch

from gensr.losses.base import WeightedLoss


class KLLoss(WeightedLoss):
    """KL(N(mu, exp(logvar)) || N(0, I)), averaged over every latent element (so beta does not
    depend on the latent map's size). KL warm-up: the training module scales the result."""

    inputs = "posterior"
    default_name = "kl"

    def compute(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


class L1ActivityLoss(WeightedLoss):
    """Mean |z|: pushes most latent activations to exactly zero (a sparse code)."""

    inputs = "latent"
    default_name = "l1_activity"

    def compute(self, z: torch.Tensor) -> torch.Tensor:
        return z.abs().mean()
