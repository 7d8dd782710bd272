"""Discriminators: image critics for `gan`, a latent critic for `aae`.

All return raw logits (no sigmoid): the adversarial losses in `gensr.losses` decide how to
read them (vanilla BCE-with-logits, LSGAN, hinge). Spectral norm (Miyato et al. 2018) is the
default stabiliser; batch norm is avoided because R1 / gradient penalties are per-sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


def _maybe_sn(module: nn.Module, on: bool) -> nn.Module:
    return _sn(module) if on else module


class DetailInput(nn.Module):
    """Feeds a critic the image *and* its fine-detail band (image minus a Gaussian blur), amplified.

    An SR output from a PSNR-trained generator matches HR in colour and shape; what differs is the
    few-percent-of-the-signal high-frequency band. Handed raw images, a small critic sits at chance
    for hundreds of steps; handed the band, it tells SR from HR at once and the generator gets a
    signal about texture from the first adversarial step.
    """

    def __init__(self, sigma: float = 1.0, gain: float = 4.0):
        super().__init__()
        self.sigma, self.gain = float(sigma), float(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from gensr.losses.frequency import gaussian_blur

        return torch.cat([x, self.gain * (x - gaussian_blur(x, self.sigma))], dim=1)


def _input_stage(channels: int, detail_sigma: float) -> tuple[nn.Module, int]:
    if detail_sigma > 0:
        return DetailInput(detail_sigma), 2 * channels
    return nn.Identity(), channels


class VGGDiscriminator(nn.Module):
    """VGG-style critic: pairs of 3x3 convs (the second strided) doubling the width, then global
    average pooling and a linear head -> one logit per image [N, 1]. Any patch size >= 1 px works
    because the pooling is adaptive."""

    def __init__(self, channels: int = 3, features: int = 32, depth: int = 4, max_features: int = 256,
                 spectral_norm: bool = True, detail_sigma: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        self.input, cin = _input_stage(channels, detail_sigma)
        for i in range(depth):
            cout = min(features * 2**i, max_features)
            layers += [
                _maybe_sn(nn.Conv2d(cin, cout, 3, 1, 1), spectral_norm), nn.LeakyReLU(0.2, inplace=True),
                _maybe_sn(nn.Conv2d(cout, cout, 4, 2, 1), spectral_norm), nn.LeakyReLU(0.2, inplace=True),
            ]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            _maybe_sn(nn.Linear(cin, cin), spectral_norm), nn.LeakyReLU(0.2, inplace=True),
            _maybe_sn(nn.Linear(cin, 1), spectral_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.input(x)))


class UNetDiscriminator(nn.Module):
    """U-Net critic with spectral norm (Real-ESRGAN style): per-pixel logits [N, 1, H, W], so it
    judges local texture everywhere and gives the generator dense feedback. Inputs of any size are
    edge-padded to a multiple of 2**depth and the logits cropped back."""

    def __init__(self, channels: int = 3, features: int = 32, depth: int = 3, spectral_norm: bool = True,
                 detail_sigma: float = 0.0):
        super().__init__()
        self.depth = depth
        sn = lambda m: _maybe_sn(m, spectral_norm)  # noqa: E731
        self.input, cin = _input_stage(channels, detail_sigma)
        self.head = nn.Conv2d(cin, features, 3, 1, 1)
        widths = [features * 2**i for i in range(depth + 1)]
        self.downs = nn.ModuleList(sn(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=False)) for i in range(depth))
        self.ups = nn.ModuleList(sn(nn.Conv2d(widths[i + 1], widths[i], 3, 1, 1, bias=False)) for i in range(depth))
        self.tail = nn.Sequential(
            sn(nn.Conv2d(features, features, 3, 1, 1, bias=False)), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(features, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        x = F.pad(self.input(x), (0, (-w) % m, 0, (-h) % m), mode="replicate")
        y = F.leaky_relu(self.head(x), 0.2)
        skips = []
        for down in self.downs:
            skips.append(y)
            y = F.leaky_relu(down(y), 0.2)
        for up, skip in zip(reversed(self.ups), reversed(skips)):
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.leaky_relu(up(y), 0.2) + skip
        return self.tail(y)[..., :h, :w]


class LatentDiscriminator(nn.Module):
    """Latent critic for the adversarial autoencoder: 1x1 convs judge each latent vector (one per
    position of the latent map) as drawn from the prior N(0, I) or from the encoder.
    Logits [N, 1, h', w']."""

    def __init__(self, latent: int, hidden: int = 64, depth: int = 3, spectral_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        cin = latent
        for _ in range(depth - 1):
            layers += [_maybe_sn(nn.Conv2d(cin, hidden, 1), spectral_norm), nn.LeakyReLU(0.2, inplace=True)]
            cin = hidden
        layers.append(nn.Conv2d(cin, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)
