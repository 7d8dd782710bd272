"""The loss contract: every loss is an `nn.Module` with a `weight`, a `name` and an `inputs` tag.

`loss(*args)` returns `weight * value` (a scalar tensor); `loss.compute(*args)` the unweighted
value. `inputs` tells a training module what to call it with:

- "pixel":      loss(sr, hr)                       L1, MSE, Charbonnier, SSIM, style (Gram)
- "posterior":  loss(mu, logvar)                   KL to N(0, I)
- "latent":     loss(z)                            L1 activity penalty (sparse AE)
- "adversarial": loss(fake_logits) generator side; loss.discriminator_loss(real_logits, fake_logits)
- "critic_reg": loss(discriminator, real[, fake])  R1 / gradient penalty, discriminator side

Weights live in config (`_target_: gensr.losses.L1Loss`, `weight: 1.0`); schedules such as KL
warm-up multiply the returned value in the training module. `active: [start, stop]` (fractions of
the run) switches a term on only for part of training: the classic "L1, then fine-tune on MSE"
recipe is `l1: {active: [0, 0.8]}` + `mse: {active: [0.8, 1]}` (MSE is what PSNR measures; L1
converges faster and more robustly from scratch).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class WeightedLoss(nn.Module):
    inputs = "pixel"
    default_name = "loss"

    def __init__(self, weight: float = 1.0, name: str | None = None, active: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.weight = float(weight)
        self.name = name or self.default_name
        start, stop = (float(a) for a in active)
        if not 0.0 <= start < stop <= 1.0:
            raise ValueError(f"loss {self.name}: active must be [start, stop] with 0 <= start < stop <= 1, got {list(active)}")
        self.active = (start, stop)

    def is_active(self, progress: float) -> bool:
        """Whether the term is on at `progress` (fraction of training done, 0..1; 1 counts as the last phase)."""
        start, stop = self.active
        return start <= progress < stop or (progress >= 1.0 and stop >= 1.0)

    def compute(self, *args, **kwargs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.weight * self.compute(*args, **kwargs)

    def extra_repr(self) -> str:
        phase = "" if self.active == (0.0, 1.0) else f", active={list(self.active)}"
        return f"name={self.name!r}, weight={self.weight}{phase}"


def build_losses(cfg: Mapping | None) -> nn.ModuleDict:
    """Instantiate a `{key: {_target_: ..., weight: ...}}` mapping; each loss is named after its key
    unless the config names it. Entries set to null are skipped (how an override drops a term)."""
    from hydra.utils import instantiate

    out = nn.ModuleDict()
    for key, spec in (cfg or {}).items():
        if spec is None:
            continue
        loss = instantiate(spec)
        if not isinstance(loss, WeightedLoss):
            raise TypeError(f"losses.{key}: {type(loss).__name__} is not a gensr.losses loss")
        if "name" not in spec:
            loss.name = str(key)
        out[str(key)] = loss
    return out
