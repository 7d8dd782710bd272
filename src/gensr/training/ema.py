"""Exponential moving average of the generator's weights, used for validation and export (through
the module's `shipped_weights` where it has one: the GAN's network interpolation).

The shadow copy lives in this callback (and in its checkpoint state), not in the module, so the
module's `state_dict` stays the raw training weights: resume restores both exactly. During
validation the EMA weights are swapped into the generator and swapped back afterwards, before
ModelCheckpoint (which Lightning always runs last) saves anything.

The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates, so a short run
is not dominated by its random initialisation.
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn


def ema_source(pl_module: L.LightningModule) -> nn.Module:
    """The network whose weights are averaged: the generator (`pl_module.net`)."""
    return pl_module.net


class EMA(L.Callback):
    def __init__(self, decay: float = 0.999, enabled: bool = True):
        self.decay, self.enabled = float(decay), enabled and decay > 0
        self.shadow: dict[str, torch.Tensor] = {}
        self.updates = 0
        self._backup: dict[str, torch.Tensor] | None = None

    @property
    def state_key(self) -> str:
        return "EMA"

    def _live(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        # Parameters and float buffers; integer buffers (counters) are copied, not averaged.
        return dict(ema_source(pl_module).state_dict(keep_vars=False))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        live = self._live(pl_module)
        if not self.shadow:
            self.shadow = {k: v.detach().clone() for k, v in live.items()}
        else:  # restored from a checkpoint: move to the module's device
            self.shadow = {k: v.to(live[k].device) for k, v in self.shadow.items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.enabled:
            return
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for k, v in self._live(pl_module).items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.to(s.dtype), 1.0 - d)
            else:
                s.copy_(v)

    def _shipped(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor] | None:
        """The weights validated and exported: EMA when enabled (and updated at least once), passed
        through the module's `shipped_weights` when it `blends_weights` (the GAN's network
        interpolation with its PSNR model); None: the live weights as they are."""
        weights = self.shadow if self.enabled and self.shadow else None
        if not getattr(pl_module, "blends_weights", False):
            return weights
        return pl_module.shipped_weights(weights if weights is not None else self._live(pl_module))

    def ema_state_dict(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        """The weights to export (`_shipped`), on the CPU."""
        weights = self._shipped(pl_module)
        if weights is None:
            weights = self._live(pl_module)
        return {k: v.detach().cpu().clone() for k, v in weights.items()}

    # Swap the shipped weights in for validation, back out before checkpoints are written.
    def _swap_in(self, pl_module: L.LightningModule) -> None:
        weights = self._shipped(pl_module) if self._backup is None else None
        if weights is not None:
            net = ema_source(pl_module)
            self._backup = {k: v.detach().clone() for k, v in net.state_dict().items()}
            net.load_state_dict(weights)

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._backup is not None:
            ema_source(pl_module).load_state_dict(self._backup)
            self._backup = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._swap_out(pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._swap_out(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {k: v.detach().cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.updates = int(state_dict["updates"])
        self.shadow = dict(state_dict["shadow"])
