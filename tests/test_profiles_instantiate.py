"""Every profile's every variant builds: its LightningModule and its nets are constructed from the
composed config (the gpu profile's wide nets included, on the CPU) and the generator upscales a
tiny input. No training. Also: conf/net and conf/discriminator hold one file per class in
gensr.archs, and a profile sizes an architecture once for every variant built on it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gensr.config import compose
from gensr.training.run import build_module, effective_config

ROOT = Path(__file__).resolve().parents[1]


def _profile(profile: str, folder: Path):
    return compose([f"profile={profile}"] + ([f"data.folder={folder}"] if profile != "quick" else []), root=ROOT)


@pytest.mark.parametrize("profile", ["quick", "full", "gpu"])
def test_every_variant_of_every_profile_builds(profile, tmp_path):
    cfg = _profile(profile, tmp_path)
    assert set(cfg.variants) <= set(cfg.models)
    for variant in cfg.models:
        cfg.variant = variant
        eff = effective_config(cfg)
        eff["model"]["init_from"] = None  # a fine-tune's start file is the train stage's business
        if "psnr_share" in eff["model"]:
            eff["model"]["psnr_share"] = 0.0  # so is the blend with it (test_train_modules)
        module = build_module(eff)
        net = module.net.eval()
        assert net.latent_channels == eff["model"]["net"]["latent"], (profile, variant)  # the composed sizes
        c, s = int(cfg.data.channels), int(cfg.degradation.scale)
        with torch.no_grad():
            sr = net(torch.rand(1, c, 7, 9))
        assert sr.shape == (1, c, 7 * s, 9 * s), (profile, variant)
        assert torch.isfinite(sr).all(), (profile, variant)
        disc = getattr(module, "disc", None)
        if disc is not None:  # GAN: judges images; AAE: judges the latent map
            image = torch.rand(1, c, 32, 32)
            x = image if "latent" not in eff["model"]["discriminator"] else net.encode(image)
            with torch.no_grad():
                assert torch.isfinite(disc(x)).all(), (profile, variant)


def test_gpu_nets_are_bigger_than_quick_ones(tmp_path):
    from hydra.utils import instantiate

    quick, gpu = _profile("quick", tmp_path), _profile("gpu", tmp_path)
    size = lambda spec: sum(p.numel() for p in instantiate(spec).parameters())  # noqa: E731
    for variant in ("ae_res", "ae"):  # one per architecture the gpu profile resizes
        assert size(gpu.models[variant].net) > 2 * size(quick.models[variant].net), variant


def test_conf_groups_hold_one_file_per_architecture():
    import gensr.archs as archs

    for group, is_disc in (("net", False), ("discriminator", True)):
        targets = [OmegaConf.load(p)._target_ for p in sorted((ROOT / "conf" / group).glob("*.yaml"))]
        classes = {f"{getattr(archs, n).__module__}.{n}" for n in archs.__all__
                   if isinstance(getattr(archs, n), type) and n.endswith("Discriminator") == is_disc}
        assert sorted(targets) == sorted(classes), group


@pytest.mark.parametrize("profile", ["quick", "full", "gpu"])
def test_a_profile_sizes_an_architecture_once_for_every_variant_on_it(profile, tmp_path):
    cfg = _profile(profile, tmp_path)
    for arch, sizes in cfg.nets.items():  # conf/net/<arch>.yaml reads its sizes from nets.<arch>
        target = OmegaConf.load(ROOT / "conf" / "net" / f"{arch}.yaml")._target_
        users = [v for v in cfg.models if cfg.models[v].net._target_ == target]
        assert users or arch == "variational_sr", arch  # the all-through-z VAE is an opt-in model
        for v in users:
            assert {k: cfg.models[v].net[k] for k in sizes} == dict(sizes), (arch, v)
    resized = compose([f"profile={profile}", f"data.folder={tmp_path}", "nets.residual_attention_ae.features=24",
                       "nets.conv_ae.depth=3"], root=ROOT)
    for v in ("ae_res", "sparse_ae", "aae", "gan", "vae"):
        assert resized.models[v].net.features == 24, v
    assert resized.models.ae.net.depth == 3


def test_readme_maps_every_conf_group_to_its_module():
    readme = (ROOT / "README.md").read_text()
    groups = [d.name for d in (ROOT / "conf").iterdir() if d.is_dir() and d.name != "profile"]
    assert groups and all(f"| `{g}/`" in readme for g in groups), groups
