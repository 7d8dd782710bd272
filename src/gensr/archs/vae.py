"""`vae`: variational super-resolution autoencoder.

encode(lr) -> (mu, logvar) latent maps; z = mu + exp(logvar / 2) * eps (reparameterisation);
decode(z, lr) -> sr. The decoder sees the LR image only through the global residual (a
bicubic-initialised learnable upsample), so every detail it adds has to pass through z: the
latent is used, and sampling z gives visibly different high-frequency detail.

Inference is deterministic (z = mu) unless `sample=True`; a `torch.Generator` makes samples
reproducible. The exported model is `forward(lr)` (z = mu).
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


class VariationalSR(nn.Module):
    def __init__(
        self,
        scale: int,
        channels: int = 3,
        features: int = 32,
        n_blocks: int = 2,
        latent: int = 16,
        downsample: bool = False,
        attention: bool = True,
        reduction: int = 8,
        logvar_clamp: float = 10.0,
    ):
        super().__init__()
        check_scale_channels(scale, channels)
        self.scale, self.channels, self.latent_channels = scale, channels, latent
        self.logvar_clamp, self.downsample = logvar_clamp, bool(downsample)
        f = features
        blocks = lambda: res_stack(f, n_blocks, attention, reduction)  # noqa: E731
        enc: list[nn.Module] = [conv3(channels, f), blocks()]
        dec: list[nn.Module] = [conv3(latent, f), nn.ReLU(inplace=True)]
        if downsample:  # latent at half the LR resolution (a tighter bottleneck)
            enc += [conv3(f, f, stride=2), nn.ReLU(inplace=True)]
            dec += [conv3(f, 4 * f), nn.PixelShuffle(2), nn.ReLU(inplace=True)]
        enc += [blocks(), conv3(f, 2 * latent)]
        dec += [blocks()]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.upsample = PixelShuffleUpsampler(f, channels, scale, zero_init=True)
        self.skip_up = LinearUpsample(channels, scale)

    def encode(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LR -> (mu, logvar), each [N, latent, h, w] (or ceil(h/2), ceil(w/2) with downsample)."""
        mu, logvar = self.encoder(lr).chunk(2, dim=1)
        # A clamp keeps exp(logvar) finite early in training; gradients pass inside the range.
        return mu, logvar.clamp(-self.logvar_clamp, self.logvar_clamp)

    @staticmethod
    def reparameterise(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        y = crop_like(self.decoder(z), lr)
        return self.upsample(y) + self.skip_up(lr)

    def forward_train(
        self, lr: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (sr decoded from a sampled z, mu, logvar) for reconstruction + KL."""
        mu, logvar = self.encode(lr)
        return self.decode(self.reparameterise(mu, logvar, generator), lr), mu, logvar

    def encode_decode(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, _ = self.encode(lr)
        return self.decode(mu, lr), mu

    def noise_shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        """Shape of the standard-normal `noise` that `sample` takes for an [n, C, h, w] input."""
        stride = 2 if self.downsample else 1
        return n, self.latent_channels, -(-h // stride), -(-w // stride)

    def sample(self, lr: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """One SR sample decoded from z = mu + temperature * sigma * eps, eps ~ N(0, I) drawn from
        `generator`, or `noise` when given (the sampling ONNX takes eps as an input: no RNG op)."""
        mu, logvar = self.encode(lr)
        if noise is None:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decode(mu + temperature * torch.exp(0.5 * logvar) * noise, lr)

    def forward(
        self, lr: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        mu, logvar = self.encode(lr)
        z = self.reparameterise(mu, logvar, generator) if sample else mu
        return self.decode(z, lr)
