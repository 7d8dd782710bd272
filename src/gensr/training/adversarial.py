"""Adversarial modules: Lightning manual optimisation with two optimisers (generator, critic).

Per iteration: (1) the critic step on real vs detached fake (+ R1 / gradient penalty, lazily every
`reg_every` iterations with the weight scaled up to match); (2) the generator step on pixel/style
losses + the adversarial term. During the first `d_warmup_steps` iterations the adversarial term
is off: the critic learns to tell real from fake while the generator trains on pixels only, so
the generator is not pushed around by a critic that still guesses.

- `GANModule`: critic on images (`discriminator`: VGG-style or U-Net with spectral norm);
  `init_from` starts the generator from a PSNR-trained model file of the same architecture, and
  `psnr_share` > 0 blends the trained generator back toward it, weight by weight (ESRGAN's network
  interpolation): what is validated and shipped is the blend, one knob between fidelity and detail.
- `AAEModule`: critic on latent maps, prior N(0, I) vs the encoder's z (adversarial autoencoder).

Gradient clipping is done here (`clip_val`): Lightning cannot clip under manual optimisation.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from gensr.errors import UserError
from gensr.training.base import SRLightningBase, _instantiate, plain


class _TwoPlayer(SRLightningBase):
    n_optimizers = 2

    def __init__(
        self,
        net: Mapping,
        discriminator: Mapping,
        optim_d: Mapping | None = None,
        d_warmup_steps: int = 0,
        reg_every: int = 1,
        extra_hparams: Mapping | None = None,
        **kwargs: Any,
    ):
        extra = {"discriminator": plain(discriminator), "optim_d": plain(optim_d),
                 "d_warmup_steps": d_warmup_steps, "reg_every": reg_every, **(extra_hparams or {})}
        super().__init__(net, extra_hparams=extra, **kwargs)
        self.automatic_optimization = False
        self.d_warmup_steps, self.reg_every = int(d_warmup_steps), max(int(reg_every), 1)
        self.optim_d_cfg = plain(optim_d) or self.optim_cfg
        adv = self.losses_for("adversarial")
        if len(adv) != 1:
            raise UserError(f"models.{self.variant}.losses needs exactly one adversarial loss, found {len(adv)}")
        self.adv = adv[0]
        self.critic_regs = self.losses_for("critic_reg")
        self.disc = self.build_discriminator(plain(discriminator))

    def build_discriminator(self, cfg: Mapping) -> torch.nn.Module:
        raise NotImplementedError

    def configure_optimizers(self):
        from gensr.training.schedule import build_optimizer

        opt_g, sch_g = build_optimizer(self.optim_cfg, self.net.parameters(), self.total_steps)
        opt_d, sch_d = build_optimizer(self.optim_d_cfg, self.disc.parameters(), self.total_steps)
        return [opt_g, opt_d], [{"scheduler": sch_g, "interval": "step"}, {"scheduler": sch_d, "interval": "step"}]

    def adversarial_on(self) -> bool:
        return self.iteration >= self.d_warmup_steps

    def critic_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Critic loss + regularisers and one critic update; returns the logged terms."""
        opt_g, opt_d = self.optimizers()
        _, sch_d = self.lr_schedulers()
        self.toggle_optimizer(opt_d)
        fake = fake.detach()
        terms = {"d_adv": self.adv.discriminator_loss(self.disc(real), self.disc(fake))}
        if self.critic_regs and self.iteration % self.reg_every == 0:
            for reg in self.critic_regs:
                terms[reg.name] = self.reg_every * reg(self.disc, real, fake)
        loss = torch.stack(list(terms.values())).sum()
        self.log_terms(terms)  # checks for NaN before the update
        self.manual_update(opt_d, sch_d, loss)
        self.untoggle_optimizer(opt_d)
        return terms

    def generator_step(self, compute_terms: Callable[[], dict[str, torch.Tensor]]) -> torch.Tensor:
        """Generator update; the terms are computed with the critic frozen (toggle_optimizer), so
        the adversarial term's backward reaches the generator only."""
        opt_g, opt_d = self.optimizers()
        sch_g, _ = self.lr_schedulers()
        self.toggle_optimizer(opt_g)
        terms = compute_terms()
        total = torch.stack(list(terms.values())).sum()
        self.log_terms(terms, total)
        self.manual_update(opt_g, sch_g, total)
        self.untoggle_optimizer(opt_g)
        self.log_lr("net", opt_g)
        self.log_lr("disc", opt_d)
        return total


class GANModule(_TwoPlayer):
    """Generator: pixel (L1) + style (Gram) losses + adversarial; critic on SR vs HR images."""

    def __init__(self, *args: Any, psnr_share: float = 0.0, **kwargs: Any):
        super().__init__(*args, extra_hparams={"psnr_share": psnr_share}, **kwargs)
        self.psnr_share = float(psnr_share)
        if self.psnr_share > 0 and not kwargs.get("init_from"):
            raise UserError(f"models.{self.variant}.psnr_share={psnr_share:g} needs init_from (the PSNR model "
                            "to blend with)")
        # Right after init_from is loaded the generator holds the PSNR model's weights; a plain
        # attribute, not a buffer: the checkpoint's keys stay the generator's own.
        self.__dict__["_psnr_weights"] = (
            {k: v.detach().clone() for k, v in self.net.state_dict().items()} if self.psnr_share > 0 else None)

    @property
    def blends_weights(self) -> bool:
        return self._psnr_weights is not None

    def shipped_weights(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The trained (EMA) generator blended with its PSNR model at `psnr_share`."""
        from gensr.checkpoint import interpolate_weights

        if self._psnr_weights is None:
            return weights
        return interpolate_weights(self._psnr_weights, weights, self.psnr_share)

    def build_discriminator(self, cfg: Mapping) -> torch.nn.Module:
        return _instantiate(cfg, channels=self.channels)

    def training_step(self, batch, batch_idx: int) -> None:
        lr, hr = (self.prepare_input(t) for t in batch)
        sr = self.train_forward(lr)
        self.critic_step(hr, sr)

        def terms() -> dict[str, torch.Tensor]:
            out = {loss.name: loss(sr, hr) for loss in self.active_losses("pixel")}
            out[self.adv.name] = self.adv(self.disc(sr)) if self.adversarial_on() else sr.new_zeros(())
            return out

        self.generator_step(terms)


class AAEModule(_TwoPlayer):
    """Autoencoder whose latent map is pushed towards the prior N(0, I) by a latent critic."""

    def build_discriminator(self, cfg: Mapping) -> torch.nn.Module:
        if not hasattr(self.net, "encode_decode"):
            raise UserError(f"models.{self.variant}: AAEModule needs a net with encode_decode()")
        return _instantiate(cfg, latent=self.net.latent_channels)

    def training_step(self, batch, batch_idx: int) -> None:
        lr, hr = (self.prepare_input(t) for t in batch)
        sr, z = self.net.encode_decode(lr)
        prior = torch.randn(z.shape, generator=self.step_generator(), device=z.device, dtype=z.dtype)
        self.critic_step(prior, z)

        def terms() -> dict[str, torch.Tensor]:
            out = {loss.name: loss(sr, hr) for loss in self.active_losses("pixel")}
            for loss in self.losses_for("latent"):
                out[loss.name] = loss(z)
            out[self.adv.name] = self.adv(self.disc(z)) if self.adversarial_on() else z.new_zeros(())
            return out

        self.generator_step(terms)
