"""`ae_res`: the autoencoder with the articles' improvements — the strong PSNR model.

    lr ─ head ─ enc blocks ─┬─ stride-2 ─ mid blocks ─ latent ─ mid blocks ─ x2 shuffle ─┐
                            └──────────── encoder-decoder skip (concat) ─────────────────┴─ dec blocks
    ... + head (long skip) ─ pixel-shuffle upsampler (x2/x3/x4) ─ + upsampled lr (global residual)

With `variational=True` it is a conditional VAE (every profile's `vae`, conf/model/vae_res.yaml):
the deterministic path above stays exactly ae_res's, and a separate stochastic latent z
(`noise_channels` at the bottleneck's resolution) is added to the upsampler's input through a
zero-initialised, bias-free conv (`inject`). In training z ~ q(z | lr, hr), from a posterior that
sees the HR image (`gensr.archs.posterior`), with a KL to the prior N(0, I); at inference `forward`
is z = 0 (the prior's mean: exactly the ae_res graph) and `sample` decodes z = temperature * eps.
An ae_res model file initialises every other weight, so the VAE starts as ae_res and moves only
as far as helps.

Residual blocks carry RCAN channel attention; with `rep=True` their convs train as re-parameterisable
3x3 + 1x1 + identity branches (`blocks.RepConv3`), which `gensr.checkpoint.load_model` fuses back
to plain 3x3 convs, so the trained net costs at inference exactly what the plain one does;
`zero_last=True` starts each block's second conv at zero (the quick profile trains with both at
lr 2e-3, conf/profile/quick.yaml). The global residual uses `LinearUpsample` (a
bicubic-initialised, learnable 5x5 conv + pixel shuffle) and the upsampler's last conv starts at
zero, so the untrained net *is* bicubic interpolation and training only adds the missing high
frequencies. `upsampler="direct"` replaces the progressive upsampler by one conv at the LR size
(`blocks.PixelShuffleUpsampler`): a faster deployed net for some PSNR (bench/README.md).
`features` / `n_blocks` set the size: the quick CPU profile and the `full` GPU profile share
this class.
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
from gensr.archs.posterior import NoiseInjection, PosteriorEncoder


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
        noise_channels: int = 8,
        logvar_clamp: float = 10.0,
        rep: bool = False,
        zero_last: bool = False,
        upsampler: str = "progressive",
    ):
        super().__init__()
        check_scale_channels(scale, channels)
        self.scale, self.channels, self.latent_channels = scale, channels, latent
        f, f2 = features, 2 * features
        blocks = lambda c: res_stack(c, n_blocks, attention, reduction, res_scale, rep, zero_last)  # noqa: E731
        self.head = conv3(channels, f)
        self.enc = blocks(f)
        self.down = nn.Sequential(conv3(f, f2, stride=2), nn.ReLU(inplace=True))
        self.mid_enc = blocks(f2)
        self.to_latent = conv3(f2, latent)
        # `conditional`: forward_train takes hr (gensr.training.modules.VAEModule passes it).
        self.variational = self.conditional = bool(variational)
        self.noise_channels = int(noise_channels) if self.variational else 0
        if self.variational:
            self.posterior = PosteriorEncoder(scale, channels, f, self.noise_channels, logvar_clamp)
            # z enters at the upsampler's input (added to the long skip `head`), not at the latent
            # map: a trained ae_res's decoder barely reacts to its latent (0.1 of noise there moved
            # the output by 7e-5; the encoder-decoder skip carries the detail).
            self.inject = NoiseInjection(self.noise_channels, f)
        self.from_latent = nn.Sequential(conv3(latent, f2), nn.ReLU(inplace=True))
        self.mid_dec = blocks(f2)
        self.up = nn.Sequential(conv3(f2, 4 * f), nn.PixelShuffle(2), nn.ReLU(inplace=True))
        self.fuse = conv3(2 * f, f)  # decoder features + encoder skip
        self.dec = blocks(f)
        self.tail = conv3(f, f)
        self.upsample = PixelShuffleUpsampler(f, channels, scale, zero_init=global_residual, kind=upsampler)
        self.skip_up = LinearUpsample(channels, scale, learnable_skip) if global_residual else None

    def init_new_parameters(self) -> tuple[str, ...]:
        """Parameters an init file of the deterministic twin lacks (gensr.checkpoint.load_init):
        the posterior encoder and the injection conv."""
        return tuple(n for n, _ in self.named_parameters() if n.startswith(("posterior.", "inject.")))

    def _encode(self, lr: torch.Tensor):
        """(head, skip, z): the LR features and latent map of the deterministic path."""
        head = self.head(lr)
        skip = self.enc(head)
        return head, skip, self.to_latent(self.mid_enc(self.down(skip)))

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
        head, skip, z = self._encode(lr)
        return self._decode(lr, head, skip, z), z

    def forward_train(self, lr: torch.Tensor, hr: torch.Tensor, generator: torch.Generator | None = None):
        """CVAE training pass: (sr decoded with z ~ q(z | lr, hr), mu, logvar of that posterior)."""
        if not self.variational:
            raise ValueError("forward_train needs ResidualAttentionAE(variational=True)")
        head, skip, latent = self._encode(lr)
        mu, logvar = self.posterior(lr, hr)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self._decode(lr, head + self.inject(z, skip), skip, latent), mu, logvar

    def noise_shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        """Shape of the standard-normal `noise` that `sample` takes for an [n, C, h, w] input."""
        return n, self.noise_channels, -(-h // 2), -(-w // 2)

    def sample(self, lr: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """One SR sample decoded from z = temperature * eps, eps ~ N(0, I) (the prior) drawn from
        `generator`, or `noise` when given (the sampling ONNX takes eps as an input: no RNG op)."""
        if not self.variational:
            raise ValueError("sample needs ResidualAttentionAE(variational=True)")
        head, skip, latent = self._encode(lr)
        if noise is None:
            shape = (latent.shape[0], self.noise_channels, *latent.shape[2:])
            noise = torch.randn(shape, generator=generator, device=latent.device, dtype=latent.dtype)
        return self._decode(lr, head + self.inject(temperature * noise, skip), skip, latent)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.encode_decode(lr)[0]
