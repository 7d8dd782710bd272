"""The LightningModules named by `_target_` in conf/model/*.yaml.

- `SRModule`  (ae, ae_res, sparse_ae): pixel losses on net(lr) [+ latent losses on z, e.g. the
  sparse AE's L1 activity penalty, when the config lists any].
- `VAEModule` (vae): reconstruction of a sampled-z decode + beta * KL with a linear KL warm-up;
  a conditional net's posterior also sees hr; validation and export use the deterministic output.
- `GANModule`, `AAEModule`: see `gensr.training.adversarial` (manual optimisation, two optimisers).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from gensr.errors import UserError
from gensr.training.adversarial import AAEModule, GANModule
from gensr.training.base import NonFiniteLossError, SRLightningBase

__all__ = ["AAEModule", "GANModule", "NonFiniteLossError", "SRModule", "VAEModule"]


def pixel_terms(module: SRLightningBase, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
    return {loss.name: loss(sr, hr) for loss in module.active_losses("pixel")}


class SRModule(SRLightningBase):
    """Deterministic autoencoders: sum of weighted pixel losses (+ latent penalties on z)."""

    def __init__(self, net: Mapping, **kwargs: Any):
        super().__init__(net, **kwargs)
        self.latent_losses = self.losses_for("latent")
        other = [l.name for l in self.losses.values() if l.inputs not in ("pixel", "latent")]
        if other:
            raise UserError(f"models.{self.variant}: SRModule cannot use losses {other} (pixel/latent only)")
        if self.latent_losses and not hasattr(self.net, "encode_decode"):
            raise UserError(f"models.{self.variant}: latent losses need a net with encode_decode()")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        lr, hr = (self.prepare_input(t) for t in batch)
        if self.latent_losses:
            sr, z = self.net.encode_decode(lr)
        else:
            sr, z = self.train_forward(lr), None
        terms = pixel_terms(self, sr, hr)
        for loss in self.latent_losses:
            terms[loss.name] = loss(z)
        total = torch.stack(list(terms.values())).sum()
        self.log_terms(terms, total)
        self.log_lr("net", self.optimizers())
        return total


class VAEModule(SRLightningBase):
    """Reconstruction + beta * KL, beta ramped linearly from 0 over `kl_warmup_steps`.

    The KL weight (beta) is the `weight` of the KL loss in `losses`; noise for the
    reparameterisation comes from a per-step seeded generator, so a resumed run draws the same.
    A net with `conditional = True` (the variational ResidualAttentionAE: q(z | lr, hr)) gets the
    HR batch too; VariationalSR's posterior q(z | lr) does not take it.

    Starting from `init_from`, the parameters that file lacks (`net.init_new_parameters()`: the
    posterior encoder, the zero-initialised injection) learn at `new_lr_scale` x the learning rate.
    At the fine-tune's low rate they take far longer than a short fine-tune to start to matter
    (quick sizes, 150 steps, beta 1e-3: the posterior cuts the L1 by 1.4% at 1x, by 16% at 10x;
    samples 0.16 vs 0.54 grey levels apart), and the KL keeps an unused posterior at the prior.
    """

    def __init__(self, net: Mapping, kl_warmup_steps: int = 0, new_lr_scale: float = 1.0, **kwargs: Any):
        super().__init__(net, extra_hparams={"kl_warmup_steps": kl_warmup_steps, "new_lr_scale": new_lr_scale},
                         **kwargs)
        self.kl_warmup_steps, self.new_lr_scale = int(kl_warmup_steps), float(new_lr_scale)
        new = getattr(self.net, "init_new_parameters", tuple)() if kwargs.get("init_from") else ()
        self.new_parameters = frozenset(new)
        self.kl_losses = self.losses_for("posterior")
        if not self.kl_losses:
            raise UserError(f"models.{self.variant}: the VAE needs a KL loss (gensr.losses.KLLoss) in losses")
        if not hasattr(self.net, "forward_train") or not getattr(self.net, "variational", True):
            raise UserError(f"models.{self.variant}: VAEModule needs a variational net with forward_train() "
                             "(VariationalSR, or ResidualAttentionAE with variational: true)")

    def configure_optimizers(self):
        if not self.new_parameters or self.new_lr_scale == 1.0:
            return super().configure_optimizers()
        from gensr.training.schedule import build_optimizer

        named = list(self.net.named_parameters())
        lr = float(self.optim_cfg["optimizer"]["lr"]) * self.new_lr_scale
        groups = [{"params": [p for n, p in named if n not in self.new_parameters]},
                  {"params": [p for n, p in named if n in self.new_parameters], "lr": lr}]
        opt, sched = build_optimizer(self.optim_cfg, groups, self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def kl_factor(self) -> float:
        if self.kl_warmup_steps <= 0:
            return 1.0
        return min(1.0, self.iteration / self.kl_warmup_steps)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        lr, hr = (self.prepare_input(t) for t in batch)
        hr_in = (hr,) if getattr(self.net, "conditional", False) else ()
        sr, mu, logvar = self.net.forward_train(lr, *hr_in, generator=self.step_generator())
        terms = pixel_terms(self, sr, hr)
        factor = self.kl_factor()
        for loss in self.kl_losses:
            terms[loss.name] = factor * loss(mu.float(), logvar.float())
        total = torch.stack(list(terms.values())).sum()
        self.log_terms(terms, total)
        self.log("train/kl_warmup", factor, on_step=True, on_epoch=False)
        self.log_lr("net", self.optimizers())
        return total
