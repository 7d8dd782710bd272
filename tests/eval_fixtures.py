"""Shared helpers for tests/test_eval_*.py: a tiny trained project in a temp folder.

- data/prepared/test/{hr,lr}: crops of scikit-image's bundled photos, LR by the project's bicubic;
- models/<v>/model.pt written with gensr.checkpoint.save_model: a real (tiny, untrained)
  `ConvAutoencoder`, a variational `ResidualAttentionAE` (its latent made to matter: see
  `write_model`) and `UpsampleNet` below, a fixed bilinear upsampler with an unsharp mask whose
  strength is its one parameter — so "sharper but not the best PSNR" variants exist without training
  (saved as gensr's `LinearUpsample`: every model file loads without tests/ on sys.path);
- models/<v>/history.csv like the train stage's;
- `write_benchmark`: a Set5/Set14-like folder (HR/, LR_bicubic/X2/);
- an MLflow SQLite store with a finished "training run" for the variants that have one;
- `dead_leaves`: a synthetic natural-like texture for the texture-metric tests.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from gensr.checkpoint import save_model
from gensr.evaluate.sets import bicubic_degrade
from gensr.tracking import run_tags

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [("astronaut", 64, 48), ("coffee", 56, 72), ("chelsea", 48, 64)]


class UpsampleNet(nn.Module):
    """Bilinear upsampling + `sharpen` x (image - blur): a deterministic stand-in generator."""

    def __init__(self, scale: int, channels: int = 3, sharpen: float = 0.0):
        super().__init__()
        self.scale, self.channels = scale, channels
        self.sharpen = nn.Parameter(torch.tensor(float(sharpen)))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(lr, scale_factor=self.scale, mode="bilinear", align_corners=False)
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=lr.device) / 16.0
        k2 = (k[:, None] * k[None, :]).expand(up.shape[1], 1, 5, 5)
        blur = F.conv2d(F.pad(up, (2, 2, 2, 2), mode="replicate"), k2, groups=up.shape[1])
        return up + self.sharpen * (up - blur)


def photo(name: str, h: int, w: int) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()[:, :, :3]
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[y : y + h, x : x + w])


def write_benchmark(folder: Path, photos: list[tuple[str, int, int]], standard_lr: bool = True) -> None:
    """HR/ images (photo crops of odd sizes) as Set5/Set14 lay them out; with `standard_lr`, the
    LR_bicubic/X2 files the published sets have (the project's MATLAB bicubic of the modcropped HR)."""
    from gensr.data.ops import modcrop
    from gensr.io import to_uint8

    for name, h, w in photos:
        hr = photo(name, h, w)
        (folder / "HR").mkdir(parents=True, exist_ok=True)
        Image.fromarray(hr).save(folder / "HR" / f"{name}.png")
        if standard_lr:
            lr = to_uint8(bicubic_degrade(modcrop(hr, 2).astype(np.float32) / 255, 2))
            (folder / "LR_bicubic" / "X2").mkdir(parents=True, exist_ok=True)
            Image.fromarray(lr).save(folder / "LR_bicubic" / "X2" / f"{name}x2.png")


def write_split(prepared: Path, scale: int, split: str = "test") -> list[str]:
    names = []
    for name, h, w in PHOTOS:
        hr = photo(name, h - h % scale, w - w % scale)
        lr = (bicubic_degrade(hr.astype(np.float32) / 255.0, scale) * 255.0).round().astype(np.uint8)
        for kind, arr in (("hr", hr), ("lr", lr)):
            (prepared / split / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(prepared / split / kind / f"{name}.png")
        names.append(name)
    return names


# Model files name gensr classes only (they load without tests/ on sys.path): UpsampleNet is
# linear, one 5x5 LR filter per output phase, so it is saved as gensr's LinearUpsample holding
# those filters (`linear_weights`), with the `sharpen` each variant gets.
LINEAR = {"_target_": "gensr.archs.blocks.LinearUpsample", "kernel": "bilinear"}
SHARPEN = {"smooth": 0.0, "gan": 1.5}


def linear_weights(net: UpsampleNet) -> dict[str, torch.Tensor]:
    """LinearUpsample's state dict that computes `net` (equal away from the borders, where the two
    replicate edges at different resolutions), read off `net`'s response to LR impulses."""
    from gensr.archs.blocks import RADIUS

    s, c_n, k = net.scale, net.channels, 2 * RADIUS + 1
    weight = torch.zeros(c_n * s * s, c_n, k, k)
    centre = 3 * RADIUS  # the impulse, far enough from the borders
    for c in range(c_n):
        x = torch.zeros(1, c_n, 2 * centre + 1, 2 * centre + 1)
        x[0, c, centre, centre] = 1.0
        with torch.no_grad():
            y = net(x)[0, c]
        for u in range(k):  # phase (ky, kx) at LR (i, j) weighs LR (i + u - RADIUS, j + v - RADIUS)
            for v in range(k):
                i, j = centre - (u - RADIUS), centre - (v - RADIUS)
                weight[c * s * s : (c + 1) * s * s, c, u, v] = y[s * i : s * i + s, s * j : s * j + s].reshape(-1)
    return {"weight": weight}


NETS = {
    "ae": {"_target_": "gensr.archs.ae.ConvAutoencoder", "features": 8, "latent": 4, "depth": 1,
           "global_residual": True},
    "smooth": LINEAR,
    "gan": LINEAR,
    "vae": {"_target_": "gensr.archs.ae_res.ResidualAttentionAE", "features": 8, "n_blocks": 1, "latent": 4,
            "variational": True, "noise_channels": 4},
}


def variational_net(scale: int = 2) -> nn.Module:
    """A tiny variational ResidualAttentionAE whose samples differ. Untrained, its zero-initialised
    last conv would make it exactly bicubic whatever the latent, and its zero-initialised noise
    injection would make every sample the z = 0 output; small random weights there stand in for
    training."""
    from hydra.utils import instantiate

    torch.manual_seed(0)
    net = instantiate({**NETS["vae"], "scale": scale, "channels": 3})
    nn.init.normal_(net.upsample.body[-1].weight, std=0.2)
    nn.init.normal_(net.inject.up[0].weight, std=0.2)
    return net.eval()


def write_model(models: Path, variant: str, scale: int, run_id: str | None = None, kind: str | None = None) -> Path:
    from hydra.utils import instantiate

    torch.manual_seed(0)
    kind = kind or variant
    net_cfg = {**NETS[kind], "scale": scale, "channels": 3}
    if kind in SHARPEN:
        state = linear_weights(UpsampleNet(scale, 3, SHARPEN[kind]))
    else:
        state = (variational_net(scale) if kind == "vae" else instantiate(net_cfg)).state_dict()
    meta = {"variant": variant, "scale": scale, "channels": 3}
    if run_id:
        meta["mlflow_run_id"] = run_id
    (models / variant).mkdir(parents=True, exist_ok=True)
    rows = ["step,epoch,train_loss,val_psnr_y,val_ssim_y,bicubic_psnr_y,lr,seconds"]
    rows += [f"{s},{s // 10},{0.1 / (1 + s)},{28 + s / 20},{0.8 + s / 1000},29.5,0.0002,{s}" for s in (10, 20, 30)]
    (models / variant / "history.csv").write_text("\n".join(rows) + "\n")
    return save_model(models / variant / "model.pt", net_cfg, state, meta)


def make_config(variants: list[str], scale: int = 2, **evaluate) -> OmegaConf:
    """The slice of params.yaml the evaluate stage reads, with conf/evaluate/default.yaml as is."""
    ecfg = OmegaConf.load(ROOT / "conf" / "evaluate" / "default.yaml")
    ecfg.benchmarks = {}  # the default list points at ../shared; tests name their own
    ecfg = OmegaConf.merge(ecfg, {"device": "cpu", "threads": 1, **evaluate})
    return OmegaConf.create({
        "variants": list(variants),
        "logger": {"experiment": "gensr-test", "connect_timeout_s": 5},
        "degradation": {"kind": "bicubic", "scale": scale},
        "data": {"channels": 3, "out_dir": "data/prepared", "max_pixels": 10_000_000},
        "evaluate": ecfg,
    })


def training_run(tracking_db: Path, variant: str, experiment: str = "gensr-test") -> str:
    """A finished run as the train stage would leave it; artifacts kept under the temp folder."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tracking_db}")
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        experiment, artifact_location=(tracking_db.parent / "mlartifacts").as_uri())
    run = client.create_run(exp_id, run_name=variant, tags=run_tags("train", variant))
    client.log_metric(run.info.run_id, "val/psnr_y", 30.0)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def dead_leaves(size: int = 256, seed: int = 0, discs: int = 4000) -> np.ndarray:
    """A dead-leaves image (Lee, Mumford & Huang 2001), the standard synthetic stand-in for natural
    image statistics: opaque discs of random colours, radii with density ~ r^-3 (scale invariance),
    each hiding those drawn after it, then a slight blur for a camera's optics. HxWx3 float in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    r_min, r_max = 2.0, size / 2.5
    radii = (r_min**-2 - rng.random(discs) * (r_min**-2 - r_max**-2)) ** -0.5
    centres = rng.uniform(-radii[:, None], size + radii[:, None], (discs, 2))
    colours = rng.random((discs, 3)).astype(np.float32)
    img = np.full((size, size, 3), 0.5, np.float32)  # the few pixels no disc covers
    yy, xx = np.mgrid[0:size, 0:size]
    for r, (cy, cx), colour in zip(radii[::-1], centres[::-1], colours[::-1]):  # back to front
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, size)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, size)
        if y0 < y1 and x0 < x1:
            img[y0:y1, x0:x1][(yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r] = colour
    return np.clip(gaussian_filter(img, (0.6, 0.6, 0)), 0, 1).astype(np.float32)
