"""Local detail statistics of a Laplacian pyramid: the texture distance of the evaluate stage and,
in differentiable form, a GAN loss that asks for detail of HR's strength *and orientation*.

Y is split into octaves of a Laplacian pyramid (Burt & Adelson's 5-tap binomial kernel). In every
band and every 3x3 patch, the band-pass gradients are summarised by their covariance (the structure
tensor: a zero-mean Gaussian model of the patch's detail, which says how strong it is and in which
orientation). The distance is the 2-Wasserstein distance between SR's and HR's patch Gaussians
(closed form for 2x2 covariances), averaged over patches, divided by HR's mean patch gradient RMS,
averaged over octaves. Blur, detail HR does not have (noise in flat areas, JPEG blocking, ringing)
and detail of the wrong orientation all raise it; the exact phase of the detail inside a patch
does not. `BandEnergyLoss` (losses/frequency.py) matches only the local energy of one band, blind to
orientation: a band of the right strength but the wrong direction costs nothing there.

Padding follows scipy.ndimage's "reflect" (half-sample symmetric) and gradients numpy's
`np.gradient`, so the metric is what the numpy reference of the first version measured.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gensr.losses.base import WeightedLoss
from gensr.losses.frequency import luma

OCTAVES = 3
# Pixels of a band per patch side. Wider patches credit detail of the right statistics at a wrong
# phase, but then noise of HR's energy beats bicubic on grainy photos (fur: already at 5): 3 is the
# widest that refuses noise (bench/texture_bound.py, bench/README.md).
WINDOW = 3
_BINOMIAL = (1.0 / 16, 4.0 / 16, 6.0 / 16, 4.0 / 16, 1.0 / 16)
# Half an 8-bit grey level: HR's detail amplitude is never taken below it, so a flat reference
# (nothing but quantisation) gives a finite score that still grows with any detail SR invents.
AMPLITUDE_FLOOR = 0.5


def _symmetric_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Half-sample symmetric padding of the last two dims (d c b a | a b c d), scipy's "reflect"."""
    x = torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], dim=-1)


def _binomial_blur(y: torch.Tensor) -> torch.Tensor:
    k = y.new_tensor(_BINOMIAL)
    y = _symmetric_pad(y, 2)
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return F.conv2d(y, k.view(1, 1, 1, -1))


def laplacian_bands(y: torch.Tensor, octaves: int = OCTAVES) -> list[torch.Tensor]:
    """Band-pass octaves of (N, 1, H, W) images, finest first; an octave under 8 px is not taken."""
    bands = []
    for _ in range(octaves):
        if min(y.shape[-2:]) < 8:
            break
        low = _binomial_blur(y)
        bands.append(y - low)
        y = low[..., ::2, ::2]
    return bands


def _patch_covariance(band: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gxx, gxy, gyy): the covariance of the band's gradients (np.gradient's) in each window x window patch."""
    gy, gx = torch.gradient(band, dim=(-2, -1))
    stacked = torch.cat([gx * gx, gx * gy, gy * gy], dim=1)
    mean = F.avg_pool2d(_symmetric_pad(stacked, window // 2), window, stride=1)
    return mean[:, 0:1], mean[:, 1:2], mean[:, 2:3]


def _sqrt(x: torch.Tensor, eps: float) -> torch.Tensor:
    # eps > 0 keeps the gradient finite where a patch is flat (the loss); the metric uses eps = 0.
    return torch.sqrt(torch.clamp(x, min=0) + eps)


def _bures(a, b, eps: float) -> torch.Tensor:
    """Per-pixel 2-Wasserstein distance between N(0, A) and N(0, B), A and B 2x2 covariances:
    W2^2 = tr A + tr B - 2 tr (A^1/2 B A^1/2)^1/2, and for 2x2 matrices
    tr (A^1/2 B A^1/2)^1/2 = sqrt(tr AB + 2 sqrt(det A det B))."""
    a11, a12, a22 = a
    b11, b12, b22 = b
    det = torch.clamp(a11 * a22 - a12 * a12, min=0) * torch.clamp(b11 * b22 - b12 * b12, min=0)
    cross = _sqrt(a11 * b11 + 2 * a12 * b12 + a22 * b22 + 2 * _sqrt(det, eps), eps)
    w2 = _sqrt(a11 + a22 + b11 + b22 - 2 * cross, eps)
    if eps:
        return w2
    # float32 rounding leaves ~1e-4 where the patches are identical; W2(A, A) is exactly 0.
    same = (a11 == b11) & (a12 == b12) & (a22 == b22)
    return torch.where(same, torch.zeros_like(w2), w2)


def structure_distance(y_sr: torch.Tensor, y_hr: torch.Tensor, octaves: int = OCTAVES,
                       eps: float = 0.0, window: int = WINDOW) -> torch.Tensor:
    """Per-image texture distance of (N, 1, H, W) luma on the 0..255 scale; 0 = HR's statistics."""
    if int(window) != window or window < 1 or window % 2 == 0:
        raise ValueError(f"texture distance: window must be an odd whole number >= 1, got {window!r}")
    per_octave = []
    for band_sr, band_hr in zip(laplacian_bands(y_sr, octaves), laplacian_bands(y_hr, octaves)):
        cov_sr, cov_hr = _patch_covariance(band_sr, window), _patch_covariance(band_hr, window)
        amplitude = _sqrt(cov_hr[0] + cov_hr[2], 0.0).mean(dim=(1, 2, 3))
        w2 = _bures(cov_sr, cov_hr, eps).mean(dim=(1, 2, 3))
        per_octave.append(w2 / torch.clamp(amplitude, min=AMPLITUDE_FLOOR))
    return torch.stack(per_octave).mean(0)


class StructureTensorLoss(WeightedLoss):
    """The texture distance of SR to HR (BT.601 luma of [0, 1] RGB), batch mean: strength and
    orientation of the detail per 3x3 patch of each octave, phase-free inside the patch."""

    default_name = "structure"

    def __init__(self, weight: float = 1.0, octaves: int = OCTAVES, name: str | None = None,
                 active: tuple[float, float] = (0.0, 1.0)):
        super().__init__(weight, name, active)
        if int(octaves) != octaves or octaves < 1:
            raise ValueError(f"loss {self.name}: octaves must be an integer >= 1, got {octaves!r}")
        self.octaves = int(octaves)

    def compute(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return structure_distance(luma(sr) * 255.0, luma(hr) * 255.0, self.octaves, eps=1e-6).mean()
