"""What every gensr LightningModule shares: the generator, its losses, validation, logging, guards.

A module is built from `conf/model/<variant>.yaml` by
`hydra.utils.instantiate(cfg.models[variant], _recursive_=False, variant=..., scale=..., ...)`:
`net`, `losses`, `optim` arrive as configs and are instantiated here, so the module's
hyper-parameters (saved in every Lightning checkpoint) stay plain containers and the checkpoint
loads with `weights_only=True`.

Validation runs the generator's deterministic forward (`net(lr)`, z = mu for the VAE) on the
fixed validation images and scores it with `gensr.metrics` (PSNR-Y / SSIM-Y, border = scale),
the same implementation evaluation and export use.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from gensr.errors import UserError
from gensr.metrics import psnr_y, ssim_y
from gensr.training.datamodule import to_numpy
from gensr.training.schedule import ramp


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss term became NaN or inf: training stops, naming the term and the step."""


def plain(cfg: Any) -> Any:
    """DictConfig/ListConfig -> dict/list (resolved); anything else unchanged."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def _instantiate(cfg: Mapping, **defaults: Any) -> nn.Module:
    from hydra.utils import instantiate

    spec = dict(cfg)
    for key, value in defaults.items():
        spec.setdefault(key, value)
    return instantiate(spec)


class SRLightningBase(L.LightningModule):
    """Generator + losses + PSNR/SSIM validation. Subclasses implement `training_step`."""

    #: optimiser steps per training iteration (2 for the adversarial modules)
    n_optimizers = 1

    def __init__(
        self,
        net: Mapping,
        losses: Mapping | None = None,
        optim: Mapping | None = None,
        ema_decay: float = 0.999,
        init_from: str | None = None,
        variant: str = "model",
        scale: int = 2,
        channels: int = 3,
        seed: int = 0,
        total_steps: int = 1000,
        clip_val: float | None = None,
        channels_last: bool = False,
        compile: bool = False,
        grid_images: int = 3,
        extra_hparams: Mapping | None = None,
    ):
        # Subclasses pass their own constructor arguments in `extra_hparams` so they are saved too.
        args = {k: v for k, v in locals().items() if k not in ("self", "extra_hparams", "__class__")}
        extra = dict(extra_hparams or {})
        super().__init__()
        from gensr.losses import build_losses

        self.save_hyperparameters({k: plain(v) for k, v in {**args, **extra}.items()}, logger=False)
        self.variant, self.scale, self.channels, self.seed = variant, int(scale), int(channels), int(seed)
        self.total_steps, self.clip_val = int(total_steps), clip_val
        # (iteration, progress) the loss phases' progress ramps from to total_steps: (0, 0.0) is
        # iteration / total_steps; gensr.training.budget moves it when it re-plans total_steps.
        self.progress_start: tuple[int, float] = (0, 0.0)
        self.use_channels_last, self.grid_images = bool(channels_last), int(grid_images)
        self.net = _instantiate(plain(net))
        self.losses = build_losses(plain(losses))
        if not any(loss.inputs == "pixel" for loss in self.losses.values()):
            raise UserError(f"models.{variant}.losses has no pixel loss (L1/MSE/Charbonnier/SSIM)")
        pixel = self.losses_for("pixel")
        for start in sorted({0.0, *(loss.active[0] for loss in pixel), *(loss.active[1] for loss in pixel)}):
            if start < 1.0 and not any(loss.is_active(start) for loss in pixel):
                raise UserError(f"models.{variant}.losses: no pixel loss is active at {start:.0%} of training "
                                 "(the `active` ranges of the pixel losses leave a gap)")
        self.optim_cfg = plain(optim) or {}
        # torch.compile'd forward for training only; kept out of the module tree so state_dict
        # keys (and checkpoints, EMA, model.pt) are the plain network's.
        self.__dict__["_train_forward"] = torch.compile(self.net) if compile else self.net
        if init_from:
            self._init_generator(init_from)
        self._val_scores: list[tuple[float, float]] = []
        self.val_samples: dict[int, np.ndarray] = {}
        self.val_results: dict[str, float] = {}
        self.epoch_loss: list[float] = []

    # ---- helpers for subclasses -------------------------------------------------------------
    def losses_for(self, inputs: str) -> list[nn.Module]:
        return [loss for loss in self.losses.values() if loss.inputs == inputs]

    @property
    def progress(self) -> float:
        """Fraction of training done (0..1), the clock of the loss phases."""
        return ramp(self.iteration, self.total_steps, *self.progress_start)

    def active_losses(self, inputs: str) -> list[nn.Module]:
        """The `inputs` losses switched on at this point of training (`active` phases)."""
        progress = self.progress
        return [loss for loss in self.losses_for(inputs) if loss.is_active(progress)]

    @property
    def iteration(self) -> int:
        """Training iterations (batches) done; global_step counts every optimiser's steps."""
        return self.global_step // self.n_optimizers

    def step_generator(self) -> torch.Generator:
        """An RNG seeded by (seed, iteration, rank): sampling noise is reproducible across resumes."""
        g = torch.Generator(device=self.device)
        g.manual_seed((self.seed * 1_000_003 + self.iteration) * 64 + self.global_rank)
        return g

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.use_channels_last else x

    def train_forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self._train_forward(lr)

    def log_terms(self, terms: dict[str, torch.Tensor], total: torch.Tensor | None = None, prefix: str = "train") -> None:
        """Stop on a NaN/inf term (naming it and the step), then log every term under its own name."""
        names = list(terms)
        values = torch.stack([terms[n].detach().float() for n in names])
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            bad = [f"'{n}' = {values[i].item()}" for i, n in enumerate(names) if not finite[i]]
            raise NonFiniteLossError(
                f"{self.variant}: loss {', '.join(bad)} is not finite at step {self.iteration}; "
                "training stopped (lower the learning rate, enable gradient clipping or check the data)"
            )
        for n in names:
            self.log(f"{prefix}/{n}", terms[n].detach(), on_step=True, on_epoch=False)
        if total is not None:
            self.log(f"{prefix}/loss", total.detach(), on_step=True, on_epoch=False, prog_bar=True)
            self.epoch_loss.append(float(total.detach()))

    def log_lr(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        self.log(f"lr-{name}", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    # ---- generator initialisation from a PSNR-trained model file ----------------------------
    def _init_generator(self, path: str) -> None:
        from gensr.checkpoint import load_init
        from gensr.config import repo_root

        p = Path(path)
        if not p.is_absolute():
            p = repo_root() / p
        if not p.is_file():
            raise UserError(f"models.{self.variant}.init_from: {p} does not exist (train that variant first)")
        meta = load_init(self.net, p, f"models.{self.variant}.net", scale=self.scale, channels=self.channels)
        print(f"[{self.variant}] generator initialised from {p} (variant {meta.get('variant')})")

    # ---- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self):
        from gensr.training.schedule import build_optimizer

        opt, sched = build_optimizer(self.optim_cfg, self.net.parameters(), self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def manual_update(self, optimizer, scheduler, loss: torch.Tensor) -> None:
        """One manual-optimisation step: backward, clip (Lightning cannot for manual), step, schedule."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.clip_val, gradient_clip_algorithm="norm")
        optimizer.step()
        scheduler.step()

    # ---- validation ----------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_scores, self.val_samples = [], {}

    def validation_step(self, batch, batch_idx: int) -> None:
        lr, hr, idx = batch
        sr = self.net(self.prepare_input(lr)).float().clamp(0, 1)
        for i in range(sr.shape[0]):
            s, h = to_numpy(sr[i]), to_numpy(hr[i])
            self._val_scores.append((psnr_y(s, h, self.scale), ssim_y(s, h, self.scale)))
            if int(idx[i]) < self.grid_images:
                self.val_samples[int(idx[i])] = s

    def on_validation_epoch_end(self) -> None:
        if not self._val_scores:
            return
        psnr = float(np.mean([p for p, _ in self._val_scores]))
        ssim = float(np.mean([s for _, s in self._val_scores]))
        results = {"val/psnr_y": psnr, "val/ssim_y": ssim}
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "bicubic_psnr", None):
            results["val/bicubic_psnr_y"] = dm.bicubic_psnr_y
            results["val/bicubic_ssim_y"] = dm.bicubic_ssim_y
            results["val/delta_psnr_y"] = psnr - dm.bicubic_psnr_y
        if math.isnan(psnr):  # inf is fine (a perfect image); NaN means the network produced NaN
            raise NonFiniteLossError(f"{self.variant}: validation PSNR-Y is {psnr} at step {self.iteration}")
        self.val_results = results
        # Every process scores all validation images, so the values agree; sync_dist only averages
        # identical numbers (and keeps Lightning's DDP checks quiet).
        for k, v in results.items():
            self.log(k, v, on_step=False, on_epoch=True, sync_dist=True, prog_bar=k == "val/psnr_y")
