"""`ae`: the plain convolutional autoencoder baseline.

LR -> convs at LR resolution -> one stride-2 conv to the latent map (half the LR resolution)
-> transposed conv back to LR resolution -> pixel-shuffle upsampler to s*h x s*w.
A long skip concatenates the LR features before upsampling (the classic AE-for-SR recipe: the
bottleneck carries context, the skip carries detail). Inputs are centred (x - 0.5) and the mean
added back at the output, as EDSR does.

`global_residual` adds a bicubic-initialised learnable upsample of the input to the output (and
zero-initialises the last conv, so training starts at bicubic). The config turns it on: without
it this plain AE needs far more than the quick profile's few hundred CPU steps to reach bicubic
PSNR (500 steps: 33-37 dB vs bicubic's 40.5 dB on a validation photo). Residual blocks, channel
attention and encoder-decoder skips remain `ae_res`'s improvements.
"""
from __future__ import annotations

import torch
from torch import nn

from gensr.archs.blocks import LinearUpsample, PixelShuffleUpsampler, check_scale_channels, conv3, crop_like

MEAN = 0.5  # [0, 1] images


class ConvAutoencoder(nn.Module):
    def __init__(
        self,
        scale: int,
        channels: int = 3,
        features: int = 48,
        latent: int = 32,
        depth: int = 2,
        long_skip: bool = True,
        global_residual: bool = False,
    ):
        super().__init__()
        check_scale_channels(scale, channels)
        self.scale, self.channels, self.latent_channels = scale, channels, latent
        act = lambda: nn.ReLU(inplace=True)  # noqa: E731
        enc: list[nn.Module] = [conv3(channels, features), act()]
        for _ in range(depth - 1):
            enc += [conv3(features, features), act()]
        self.features = nn.Sequential(*enc)
        self.to_latent = nn.Sequential(conv3(features, features, stride=2), act(), conv3(features, latent))
        self.from_latent = nn.Sequential(
            conv3(latent, features), act(), nn.ConvTranspose2d(features, features, 4, stride=2, padding=1), act()
        )
        self.long_skip = long_skip
        self.fuse = nn.Sequential(conv3(features * (2 if long_skip else 1), features), act())
        self.upsample = PixelShuffleUpsampler(features, channels, scale, zero_init=global_residual)
        self.skip_up = LinearUpsample(channels, scale) if global_residual else None

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """LR -> latent map [N, latent, ceil(h/2), ceil(w/2)]."""
        return self.to_latent(self.features(lr - MEAN))

    def encode_decode(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Centre the input; the output gets the mean back (EDSR's mean shift: the plain net starts
        # near mid-grey instead of near 0) or, with the global residual, the upsampled input.
        feats = self.features(lr - MEAN)
        z = self.to_latent(feats)
        y = crop_like(self.from_latent(z), lr)
        if self.long_skip:
            y = torch.cat([y, feats], dim=1)
        sr = self.upsample(self.fuse(y))
        sr = sr + (self.skip_up(lr) if self.skip_up is not None else MEAN)
        return sr, z

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.encode_decode(lr)[0]
