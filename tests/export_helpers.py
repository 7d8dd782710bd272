"""Fixtures shared by the export and upscaler tests: small nets, ONNX files, a prepared-data tree."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image
from torch import nn

from gensr.archs.blocks import nearest_upsample
from gensr.checkpoint import save_model
from gensr.export.onnx_export import export_onnx

# A small real architecture (stride-2 latent, long skip) for stage tests: fast on 2 CPU cores.
SMALL_AE = {"_target_": "gensr.archs.ae.ConvAutoencoder", "features": 8, "latent": 4, "depth": 1,
            "global_residual": True}


class LocalSR(nn.Module):
    """Purely local net (receptive-field radius 2, no global ops): tiling is exact in principle, so
    any tiled/untiled difference is the blending's fault."""

    def __init__(self, scale: int = 2, channels: int = 3, width: int = 8):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, channels * scale * scale, 3, padding=1), nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nearest_upsample(x, self.scale) + 0.1 * self.body(x)


def export_file(net: nn.Module, path: Path, variant: str, scale: int, channels: int) -> Path:
    meta = {"variant": variant, "scale": scale, "channels": channels, "mlflow_run_id": "r0",
            "git_commit": "abc123", "manifest_hash": "m0"}
    proto = export_onnx(net.eval(), meta, opset=18)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, path)
    return path


def save_small_model(root: Path, variant: str, scale: int = 2, channels: int = 3, seed: int = 0) -> Path:
    from hydra.utils import instantiate

    torch.manual_seed(seed)
    config = {**SMALL_AE, "scale": scale, "channels": channels}
    net = instantiate(config)
    meta = {"variant": variant, "scale": scale, "channels": channels, "mlflow_run_id": None,
            "git_commit": "abc123", "manifest_hash": "m0"}
    return save_model(root / "models" / variant / "model.pt", config, net.state_dict(), meta)


def smooth_image(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    """uint8 photo-like content: smooth colour waves plus a few hard edges."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, channels), np.float32)
    for c in range(channels):
        fy, fx, ph = rng.uniform(0.02, 0.15, 2).tolist() + [rng.uniform(0, 6.3)]
        img[:, :, c] = 0.5 + 0.3 * np.sin(fy * y + fx * x + ph)
    img[h // 3 : h // 2, w // 4 : w // 2] += 0.2
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def make_prepared(root: Path, scale: int = 2, n_train: int = 3, n_test: int = 2, size: int = 48) -> Path:
    """data/prepared/{train,test}/{hr,lr}/*.png: modcropped HR and its bicubic LR."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            hr = smooth_image(rng, size + 2 * i, size + 4 * i)
            hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
            lr = Image.fromarray(hr).resize((hr.shape[1] // scale, hr.shape[0] // scale), Image.Resampling.BICUBIC)
            for kind, im in (("hr", Image.fromarray(hr)), ("lr", lr)):
                out = root / "data" / "prepared" / split / kind / f"img{i}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                im.save(out)
    return root / "data" / "prepared"
