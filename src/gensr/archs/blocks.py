"""Building blocks shared by every generator and discriminator.

Everything here is ONNX-export friendly (dynamo, dynamic batch/height/width): convolutions,
pixel shuffle, replicate padding and slicing by another tensor's shape. No bicubic
`F.interpolate` (onnxruntime's bicubic differs from torch's).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALES = (2, 3, 4)


def check_scale_channels(scale: int, channels: int) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")


def conv3(cin: int, cout: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


def crop_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop x (bottom/right) to ref's height and width.

    A stride-2 conv (k=3, p=1) maps h to ceil(h/2); upsampling by 2 gives h+1 for odd h, so the
    decoder crops back instead of padding the input: slicing by a symbolic size exports cleanly.
    """
    return x[..., : ref.shape[-2], : ref.shape[-1]]


class ChannelAttention(nn.Module):
    """RCAN squeeze-and-excite: global average pool -> bottleneck MLP -> sigmoid channel gates."""

    def __init__(self, features: int, reduction: int = 8):
        super().__init__()
        hidden = max(features // reduction, 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(features, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, features, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class RepConv3(nn.Module):
    """A 3x3 conv trained as parallel 3x3, 1x1 and identity branches (RepVGG / ECBSR).

    The branches are linear, so their sum is one 3x3 conv: `fused()` returns it, and a deployed net
    (`reparameterize`) costs exactly a plain conv. Training sees a better-conditioned sum (the 1x1 and
    identity paths give every layer a short gradient path): more PSNR per step in the quick profile,
    no more per hour in the full one, where each step costs ~15% more (bench/README.md).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv3, self.conv1 = conv3(cin, cout), nn.Conv2d(cin, cout, 1)
        self.identity = cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(x) + self.conv1(x)
        return y + x if self.identity else y

    @torch.no_grad()
    def fused(self) -> nn.Conv2d:
        conv = conv3(self.conv3.in_channels, self.conv3.out_channels).to(self.conv3.weight)
        weight = self.conv3.weight.clone()
        weight[:, :, 1, 1] += self.conv1.weight[:, :, 0, 0]
        if self.identity:
            weight[:, :, 1, 1] += torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
        conv.weight.copy_(weight)
        conv.bias.copy_(self.conv3.bias + self.conv1.bias)
        return conv


def reparameterize(net: nn.Module) -> nn.Module:
    """Replace every RepConv3 in `net` by its fused 3x3 conv, in place (the deployed form); `net`."""
    for name, child in list(net.named_children()):
        if isinstance(child, RepConv3):
            setattr(net, name, child.fused())
        else:
            reparameterize(child)
    return net


class ResidualBlock(nn.Module):
    """conv-ReLU-conv (+ optional channel attention), scaled and added to the input (EDSR/RCAB).

    The residual scale keeps deep stacks stable without batch norm (which hurts SR fidelity).
    `rep`: each conv trains as a RepConv3 (fused to one conv for inference). `zero_last`: the second
    conv's weights start at zero (SkipInit / Fixup), so a deep stack starts close to the identity
    and takes a higher learning rate without its early updates blowing up the residual sum.
    """

    def __init__(self, features: int, attention: bool = True, reduction: int = 8, res_scale: float = 1.0,
                 rep: bool = False, zero_last: bool = False):
        super().__init__()
        conv = RepConv3 if rep else conv3
        layers: list[nn.Module] = [conv(features, features), nn.ReLU(inplace=True), conv(features, features)]
        if zero_last:  # every conv of the second conv's branches (a RepConv3's identity stays)
            for m in layers[2].modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.zeros_(m.weight)
        if attention:
            layers.append(ChannelAttention(features, reduction))
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


def res_stack(features: int, n: int, attention: bool = True, reduction: int = 8, res_scale: float = 1.0,
              rep: bool = False, zero_last: bool = False) -> nn.Module:
    return nn.Sequential(*[ResidualBlock(features, attention, reduction, res_scale, rep, zero_last)
                           for _ in range(n)])


UPSAMPLERS = ("progressive", "direct")


class PixelShuffleUpsampler(nn.Module):
    """features -> channels at `scale` x the resolution.

    `progressive` (EDSR): (conv -> pixel shuffle -> ReLU) per x2 step (one x3 step), then a conv at
    the output resolution. `direct` (ESPCN / IMDN): one conv to channels x scale^2 and one pixel
    shuffle, so every conv runs at the LR resolution: at x4, 45% fewer multiply-adds and half the
    training step of ae_res, for 0.17 dB less on Set5 in a 12-minute run (bench/README.md).
    """

    def __init__(self, features: int, channels: int, scale: int, zero_init: bool = False,
                 kind: str = "progressive"):
        super().__init__()
        if kind not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {kind!r}")
        layers: list[nn.Module] = []
        if kind == "direct":
            last, shuffle = conv3(features, channels * scale * scale), [nn.PixelShuffle(scale)]
        else:
            for r in [3] if scale == 3 else [2] * {2: 1, 4: 2}[scale]:
                layers += [conv3(features, features * r * r), nn.PixelShuffle(r), nn.ReLU(inplace=True)]
            last, shuffle = conv3(features, channels), []
        if zero_init:
            # Under a global residual the net then starts exactly at the interpolated input and
            # only improves on it, instead of first unlearning random output noise.
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last, *shuffle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _cubic(x: torch.Tensor) -> torch.Tensor:
    # Keys' cubic convolution, a = -0.5 (MATLAB's imresize "bicubic", the SR benchmarks' baseline).
    ax = x.abs()
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
            + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax < 2)))


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


KERNELS = {"bicubic": _cubic, "bilinear": _triangle}
RADIUS = 2  # taps at input offsets -2..2 cover both kernels for every output phase


def interp_taps(scale: int, kernel: str = "bicubic") -> torch.Tensor:
    """taps[k, j]: weight of input offset j - RADIUS for output phase k of a 1-D x`scale` upsample,
    with the half-pixel geometry of MATLAB imresize / torch align_corners=False (output k samples
    the input at (k + 0.5) / scale - 0.5)."""
    offsets = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float64)
    pos = (torch.arange(scale, dtype=torch.float64) + 0.5) / scale - 0.5
    taps = KERNELS[kernel](offsets[None, :] - pos[:, None])
    return (taps / taps.sum(dim=1, keepdim=True)).float()


class LinearUpsample(nn.Module):
    """Fixed-kernel x`scale` upsampling as one 5x5 conv (edge padding) + pixel shuffle.

    Initialised to the bicubic (Keys a = -0.5, MATLAB's) or bilinear kernel, so a global residual
    starts from the classic interpolation and the network only has to learn what that misses;
    `learnable=True` lets training refine the kernel itself. Conv + pixel shuffle export to ONNX
    exactly, unlike resize ops whose cubic modes differ between torch and onnxruntime. Borders
    use edge replication (MATLAB mirrors), which only differs on the outermost pixels.
    """

    def __init__(self, channels: int, scale: int, learnable: bool = True, kernel: str = "bicubic"):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
        taps = interp_taps(scale, kernel)
        k = 2 * RADIUS + 1
        # weight[c*s*s + ky*s + kx, c] = outer(taps[ky], taps[kx]) (pixel shuffle's channel order)
        weight = torch.zeros(channels * scale * scale, channels, k, k)
        for c in range(channels):
            for ky in range(scale):
                for kx in range(scale):
                    weight[c * scale * scale + ky * scale + kx, c] = torch.outer(taps[ky], taps[kx])
        if learnable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (RADIUS,) * 4, mode="replicate")
        return self.shuffle(F.conv2d(x, self.weight))


def nearest_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Nearest-neighbour upsampling via expand + reshape (exports as Expand/Reshape, no Resize op)."""
    n, c, h, w = x.shape
    x = x[:, :, :, None, :, None].expand(n, c, h, scale, w, scale)
    return x.reshape(n, c, h * scale, w * scale)
