"""Fixtures shared by the export and upscaler tests: small nets, ONNX files, a prepared-data tree."""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image
from torch import nn

from gensr.archs.blocks import nearest_upsample
from gensr.checkpoint import save_model
from gensr.cli import TRAIN_MODULES
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


# The quick profile's VAE recipe at toy size: ae_res trained briefly, then its conditional-VAE twin
# (4 noise channels) fine-tuned from it with conf/model/vae_res.yaml's KL weight and new_lr_scale.
TINY_AE_RES = {"_target_": "gensr.archs.ae_res.ResidualAttentionAE", "scale": 2, "channels": 3,
               "features": 8, "n_blocks": 1, "latent": 4}
TINY_VAE_RES = {**TINY_AE_RES, "variational": True, "noise_channels": 4}
TRAIN_CROPS = [("astronaut", 0, 0), ("coffee", 100, 200), ("chelsea", 50, 100), ("astronaut", 200, 300)]
TEST_CROPS = [("astronaut", 300, 100, 96), ("coffee", 250, 300, 64)]  # regions no training crop covers


def photo_pair(name: str, y: int, x: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) float32 HxWx3 of a bundled photo's crop, LR by the project's bicubic degradation."""
    from skimage import data

    from gensr.evaluate.sets import bicubic_degrade

    hr = getattr(data, name)()[y : y + size, x : x + size, :3].astype(np.float32) / 255
    return bicubic_degrade(hr, 2), hr


@functools.cache
def trained_ae_res(steps: int = 300, patch: int = 16, batch: int = 8) -> dict[str, torch.Tensor]:
    """State dict of TINY_AE_RES after `steps` of L1 on random patches of TRAIN_CROPS (~10 s on one
    core; cached per process), a little but reliably above bicubic on TEST_CROPS."""
    from hydra.utils import instantiate

    torch.manual_seed(0)
    net = instantiate(TINY_AE_RES)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        lr, hr = _train_batch(rng, patch, batch)
        loss = (net(lr) - hr).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _train_batch(rng: np.random.Generator, patch: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) NCHW: `batch` random `patch`-pixel LR patches of TRAIN_CROPS and their HR."""
    pairs = _train_pairs()
    lrs, hrs = [], []
    for i in rng.integers(len(pairs), size=batch):
        lr, hr = pairs[i]
        y, x = (int(v) for v in rng.integers(0, lr.shape[0] - patch + 1, size=2))
        lrs.append(lr[y : y + patch, x : x + patch])
        hrs.append(hr[2 * y : 2 * (y + patch), 2 * x : 2 * (x + patch)])
    nchw = lambda a: torch.from_numpy(np.stack(a).transpose(0, 3, 1, 2).copy())  # noqa: E731
    return nchw(lrs), nchw(hrs)


@functools.cache
def _train_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    return [photo_pair(n, y, x, 128) for n, y, x in TRAIN_CROPS]


@functools.cache
def trained_vae_res(steps: int = 200, patch: int = 16, batch: int = 8, lr: float = 5e-4) -> dict[str, torch.Tensor]:
    """State dict of TINY_VAE_RES fine-tuned from trained_ae_res() as VAEModule trains the `vae`:
    L1 of the decode with z ~ q(z | lr, hr) + beta * KL (conf/model/vae_res.yaml's beta, warm-up
    over the first half), the parameters the ae_res file lacks at its new_lr_scale x the lr."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from gensr.losses import KLLoss

    recipe = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "vae_res.yaml")
    torch.manual_seed(0)
    net = instantiate(TINY_VAE_RES)
    missing, unexpected = net.load_state_dict(trained_ae_res(), strict=False)
    assert not unexpected and sorted(missing) == sorted(net.init_new_parameters())
    new = [p for n, p in net.named_parameters() if n in missing]
    rest = [p for n, p in net.named_parameters() if n not in missing]
    opt = torch.optim.Adam([{"params": rest}, {"params": new, "lr": lr * recipe.new_lr_scale}], lr)
    kl, rng, g = KLLoss(weight=recipe.losses.kl.weight), np.random.default_rng(1), torch.Generator().manual_seed(1)
    for step in range(steps):
        lr_b, hr_b = _train_batch(rng, patch, batch)
        sr, mu, logvar = net.forward_train(lr_b, hr_b, generator=g)
        loss = (sr - hr_b).abs().mean() + min(1.0, 2 * step / steps) * kl(mu, logvar)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def tiny_vae_res() -> nn.Module:
    """TINY_VAE_RES with the trained_vae_res() weights, eval mode."""
    from hydra.utils import instantiate

    net = instantiate(TINY_VAE_RES)
    net.load_state_dict(trained_vae_res())
    return net.eval()


def save_vae_res(root: Path, variant: str = "vae") -> Path:
    meta = {"variant": variant, "scale": 2, "channels": 3, "mlflow_run_id": None,
            "git_commit": "abc123", "manifest_hash": "m0"}
    return save_model(root / "models" / variant / "model.pt", TINY_VAE_RES, tiny_vae_res().state_dict(), meta)


# What the torch-free code (gensr.infer, gensr upscale, gensr sample) must run without: every
# module of the training extra (torch, lightning, hydra, omegaconf, mlflow, dvc, scipy, skimage, ...).
HEAVY = sorted(TRAIN_MODULES | {"pytorch_lightning"})


def python_without_heavy_imports(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter where importing any of HEAVY raises ImportError; the child
    also fails if one of them got imported anyway. `code` sets `rc`, the exit status."""
    code = (
        "import sys\n"
        f"for name in {HEAVY!r}: sys.modules[name] = None  # any import of these now raises ImportError\n"
        "rc = 0\n"
        f"{code}\n"
        f"assert not [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} and sys.modules[m] is not None]\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def cli_without_heavy_imports(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`gensr <argv>` run by python_without_heavy_imports."""
    return python_without_heavy_imports(f"from gensr.cli import main\nrc = main({list(argv)!r})", cwd)


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
