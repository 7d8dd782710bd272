"""Adversarial losses (vanilla / LSGAN / hinge) and discriminator regularisers (R1, WGAN-GP).

Discriminators output raw logits of any shape ([N, 1] or per-pixel [N, 1, H, W]); every loss
is a mean over all logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gensr.losses.base import WeightedLoss

GAN_TYPES = ("vanilla", "lsgan", "hinge")


class AdversarialLoss(WeightedLoss):
    """Generator side: `loss(fake_logits)` (weighted); discriminator side:
    `loss.discriminator_loss(real_logits, fake_logits)` (unweighted — the weight balances the
    generator's objective, the discriminator has only this one)."""

    inputs = "adversarial"
    default_name = "adv"

    def __init__(self, weight: float = 0.01, gan_type: str = "vanilla", name: str | None = None,
                 active: tuple[float, float] = (0.0, 1.0)):
        super().__init__(weight, name, active)
        if gan_type not in GAN_TYPES:
            raise ValueError(f"gan_type must be one of {GAN_TYPES}, got {gan_type!r}")
        self.gan_type = gan_type

    def compute(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.gan_type == "vanilla":  # BCE(sigmoid(f), 1), non-saturating
            return F.softplus(-fake_logits).mean()
        if self.gan_type == "lsgan":
            return ((fake_logits - 1) ** 2).mean()
        return -fake_logits.mean()  # hinge generator loss

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.gan_type == "vanilla":
            return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        if self.gan_type == "lsgan":
            return ((real_logits - 1) ** 2).mean() + (fake_logits**2).mean()
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


class R1Penalty(WeightedLoss):
    """R1 (Mescheder et al. 2018): 0.5 * E||grad_x D(x_real)||^2 — keeps D smooth on real data.
    `loss(discriminator, real)` runs D itself (on a copy of `real` that requires grad)."""

    inputs = "critic_reg"
    default_name = "r1"

    def compute(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor | None = None) -> torch.Tensor:
        real = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator(real).sum(), real, create_graph=True)
        return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


class GradientPenalty(WeightedLoss):
    """WGAN-GP (Gulrajani et al. 2017): E(||grad D(x_hat)|| - 1)^2 on real/fake interpolates."""

    inputs = "critic_reg"
    default_name = "gp"

    def compute(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
        x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
