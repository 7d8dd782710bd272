"""`ae_res`: the autoencoder with the articles' improvements — the strong PSNR model.

    lr ─ head ─ enc blocks ─┬─ stride-2 ─ mid blocks ─ latent ─ mid blocks ─ x2 shuffle ─┐
                            └──────────── encoder-decoder skip (concat) ─────────────────┴─ dec blocks
    ... + head (long skip) ─ pixel-shuffle upsampler (x2/x3/x4) ─ + upsampled lr (global residual)

With `variational=True` the bottleneck is a VAE's: a second head predicts log-variances beside
the mean (`to_latent` stays the mean, so an ae_res model file initialises it exactly and the new
`to_logvar` head starts at a small fixed variance); `forward_train` decodes a sampled z and
`forward` decodes z = mu (every profile's `vae` variant, conf/model/vae_res.yaml).

Residual blocks carry RCAN channel attention. The global residual uses `LinearUpsample` (a
bicubic-initialised, learnable 5x5 conv + pixel shuffle) and the upsampler's last conv starts at
zero, so the untrained net *is* bicubic interpolation and training only adds the missing high
frequencies. `features` / `n_blocks` set the size: the quick CPU profile and the `full`
GPU profile share this class.
"""
from __future__ import annotations

import torch
from torch import nn

from gensr.archs.blocks import (
    LinearUpsample,
    PixelShuffleUpsampler,
    check_scale_channels,
    conv3,
    crop_like,
    res_stack,
)


class ResidualAttentionAE(nn.Module):
    def __init__(
        self,
        scale: int,
        channels: int = 3,
        features: int = 32,
        n_blocks: int = 2,
        latent: int = 32,
        attention: bool = True,
        reduction: int = 8,
        res_scale: float = 1.0,
        global_residual: bool = True,
        learnable_skip: bool = True,
        variational: bool = False,
        logvar_init: float = -6.0,
        logvar_clamp: float = 10.0,
    ):
        super().__init__()
        check_scale_channels(scale, channels)
        self.scale, self.channels, self.latent_channels = scale, channels, latent
        f, f2 = features, 2 * features
        blocks = lambda c: res_stack(c, n_blocks, attention, reduction, res_scale)  # noqa: E731
        self.head = conv3(channels, f)
        self.enc = blocks(f)
        self.down = nn.Sequential(conv3(f, f2, stride=2), nn.ReLU(inplace=True))
        self.mid_enc = blocks(f2)
        self.to_latent = conv3(f2, latent)
        self.variational, self.logvar_clamp = bool(variational), float(logvar_clamp)
        if self.variational:
            self.to_logvar = conv3(f2, latent)
            nn.init.zeros_(self.to_logvar.weight)
            nn.init.constant_(self.to_logvar.bias, logvar_init)
        self.from_latent = nn.Sequential(conv3(latent, f2), nn.ReLU(inplace=True))
        self.mid_dec = blocks(f2)
        self.up = nn.Sequential(conv3(f2, 4 * f), nn.PixelShuffle(2), nn.ReLU(inplace=True))
        self.fuse = conv3(2 * f, f)  # decoder features + encoder skip
        self.dec = blocks(f)
        self.tail = conv3(f, f)
        self.upsample = PixelShuffleUpsampler(f, channels, scale, zero_init=global_residual)
        self.skip_up = LinearUpsample(channels, scale, learnable_skip) if global_residual else None

    def init_new_parameters(self) -> tuple[str, ...]:
        """Parameters an init file of the deterministic twin lacks (gensr.checkpoint.load_init)."""
        return tuple(f"to_logvar.{n}" for n, _ in self.to_logvar.named_parameters()) if self.variational else ()

    def _encode(self, lr: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False):
        """(head, skip, z, mu, logvar); z is mu unless `sample` (variational nets only)."""
        head = self.head(lr)
        skip = self.enc(head)
        h = self.mid_enc(self.down(skip))
        mu = self.to_latent(h)
        if not self.variational:
            return head, skip, mu, mu, None
        logvar = self.to_logvar(h).clamp(-self.logvar_clamp, self.logvar_clamp)
        z = mu
        if sample:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
        return head, skip, z, mu, logvar

    def _decode(self, lr: torch.Tensor, head: torch.Tensor, skip: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = crop_like(self.up(self.mid_dec(self.from_latent(z))), skip)
        y = self.dec(self.fuse(torch.cat([y, skip], dim=1)))
        sr = self.upsample(self.tail(y) + head)
        if self.skip_up is not None:
            sr = sr + self.skip_up(lr)
        return sr

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """LR -> latent map [N, latent, ceil(h/2), ceil(w/2)] (the mean for a variational net)."""
        return self._encode(lr)[2]

    def encode_decode(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head, skip, z, _, _ = self._encode(lr)
        return self._decode(lr, head, skip, z), z

    def forward_train(self, lr: torch.Tensor, generator: torch.Generator | None = None):
        """VAE training pass: (sr decoded from a sampled z, mu, logvar)."""
        if not self.variational:
            raise ValueError("forward_train needs ResidualAttentionAE(variational=True)")
        head, skip, z, mu, logvar = self._encode(lr, generator, sample=True)
        return self._decode(lr, head, skip, z), mu, logvar

    def noise_shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        """Shape of the standard-normal `noise` that `sample` takes for an [n, C, h, w] input."""
        return n, self.latent_channels, -(-h // 2), -(-w // 2)

    def sample(self, lr: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """One SR sample decoded from z = mu + temperature * sigma * eps, eps ~ N(0, I) drawn from
        `generator`, or `noise` when given (the sampling ONNX takes eps as an input: no RNG op)."""
        if not self.variational:
            raise ValueError("sample needs ResidualAttentionAE(variational=True)")
        head, skip, mu, _, logvar = self._encode(lr)
        if noise is None:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self._decode(lr, head, skip, mu + temperature * torch.exp(0.5 * logvar) * noise)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.encode_decode(lr)[0]
