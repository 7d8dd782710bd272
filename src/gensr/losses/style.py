"""Style (Gram-matrix) loss on a fixed, random, multi-scale conv feature extractor.

No pretrained VGG can be downloaded here, so the features come from a small frozen network
with seeded random weights (He-initialised 3x3 convs + ReLU, average-pooled between scales).
Gram matrices of random conv features are known to capture texture statistics well (Ustyuzhaninov
et al., "Texture synthesis using shallow convolutional networks with random filters", 2016),
which is what a style term is for in SR: matching the texture statistics of HR, not pixels.
The weights are non-persistent buffers: not trained, not in any optimiser, not in checkpoints,
and identical in every process because they are rebuilt from the seed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gensr.losses.base import WeightedLoss


def gram(feat: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, C] normalised by H*W (independent of the patch size)."""
    n, c, h, w = feat.shape
    f = feat.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


class StyleLoss(WeightedLoss):
    default_name = "style"

    def __init__(self, weight: float = 1.0, widths: tuple[int, ...] = (16, 32, 64), seed: int = 0,
                 name: str | None = None,
                 active: tuple[float, float] = (0.0, 1.0)):
        super().__init__(weight, name, active)
        gen = torch.Generator().manual_seed(int(seed))
        cin = 3  # single-channel images are repeated to 3 channels
        self.n_layers = len(widths)
        for i, cout in enumerate(widths):
            w = torch.randn(int(cout), cin, 3, 3, generator=gen) * math.sqrt(2.0 / (cin * 9))
            self.register_buffer(f"w{i}", w, persistent=False)
            cin = int(cout)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = x - 0.5  # centre [0, 1] images so the random filters see signed input
        feats = []
        for i in range(self.n_layers):
            if i:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
            x = F.relu(F.conv2d(x, getattr(self, f"w{i}"), padding=1))
            feats.append(x)
        return feats

    def compute(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        loss = sr.new_zeros(())
        for fs, fh in zip(self.features(sr), self.features(hr)):
            loss = loss + F.l1_loss(gram(fs), gram(fh))
        return loss
