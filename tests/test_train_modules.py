"""fast_dev_run of the LightningModule of every conf/model/*.yaml, plus the loss guards."""
from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from gensr.config import compose
from gensr.training.base import NonFiniteLossError, plain
from gensr.training.datamodule import SRDataModule
from gensr.training.ema import EMA
from gensr.training.run import effective_config
from train_fixtures import ROOT, tiny_overrides

VARIANTS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))


def build(project, variant: str, extra: list[str] = ()):
    cfg = compose([*tiny_overrides(variant), *extra], root=project)
    eff = effective_config(cfg)
    scale, channels = eff["degradation"]["scale"], eff["data"]["channels"]
    dm = SRDataModule(project / "data" / "prepared", scale, channels, patch_size=32, batch_size=4,
                      num_workers=0, val_max_side=48, steps_per_epoch=2, seed=0)
    module = instantiate(eff["model"], _recursive_=False, variant=variant, scale=scale, channels=channels,
                         seed=0, total_steps=4, clip_val=1.0)
    return module, dm, eff


def fast_dev_run(module, dm, ema: EMA | None = None) -> L.Trainer:
    trainer = L.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[ema] if ema else [], use_distributed_sampler=False,
        gradient_clip_val=None if not module.automatic_optimization else 1.0,
    )
    trainer.fit(module, datamodule=dm)
    return trainer


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_dev_run(project, variant):
    module, dm, _ = build(project, variant)
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    ema = EMA(0.999)
    fast_dev_run(module, dm, ema)
    after = module.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "no generator weight changed"
    r = module.val_results
    assert math.isfinite(r["val/psnr_y"]) and 0 < r["val/ssim_y"] <= 1
    assert r["val/bicubic_psnr_y"] == pytest.approx(dm.bicubic_psnr_y)
    # The EMA swap is undone after validation: the module holds the raw training weights again.
    assert set(ema.shadow) == set(after)
    # Hyper-parameters are plain containers (checkpoints load with weights_only=True).
    assert all(not type(v).__module__.startswith("omegaconf") for v in module.hparams.values())


def test_nan_loss_stops_with_name_and_step(project):
    module, dm, _ = build(project, "ae")
    module.losses["l1"].weight = float("nan")  # a config cannot say nan: the schema refuses it
    with pytest.raises(NonFiniteLossError, match=r"loss 'l1' = nan is not finite at step 0"):
        fast_dev_run(module, dm)


def test_vae_kl_warmup_and_deterministic_validation(project):
    module, dm, eff = build(project, "vae", ["models.vae.kl_warmup_steps=10"])
    assert module.kl_factor() == 0.0  # iteration 0
    module.net.eval()
    lr = torch.rand(1, 3, 9, 11)
    # Validation/export path: the deterministic output (z = 0), so two calls agree exactly.
    assert torch.equal(module.net(lr), module.net(lr))


def test_unknown_module_key_is_refused(project):
    cfg = compose([*tiny_overrides("ae"), "+models.ae.kl_warmup_step=3"], root=project)
    eff = effective_config(cfg)
    with pytest.raises(Exception, match="kl_warmup_step"):
        instantiate(eff["model"], _recursive_=False, variant="ae", scale=2, channels=3)


def test_schedule_warmup_then_cosine():
    from gensr.training.schedule import WarmupSchedule

    s = WarmupSchedule(total_steps=110, warmup_steps=10, kind="cosine", min_lr_ratio=0.1)
    assert s(0) < s(5) < s(9) < 1.0 and s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1)
    step = WarmupSchedule(total_steps=100, warmup_steps=0, kind="step", step_size=10, gamma=0.5)
    assert step(9) == 1.0 and step(10) == 0.5 and step(25) == 0.25
    with pytest.raises(ValueError, match="kind"):
        WarmupSchedule(10, kind="linear")


def test_plain_hparams_roundtrip(project):
    module, _, eff = build(project, "gan")
    assert module.hparams["discriminator"] == plain(eff["model"]["discriminator"])


def test_variant_must_be_named_and_known(project):
    with pytest.raises(ValueError, match="variant is not set"):
        effective_config(compose([], root=project))
    with pytest.raises(ValueError, match="variant=nope: must be one of ae, ae_res"):
        effective_config(compose(["variant=nope"], root=project))


def test_channels_last_training_step(project):
    # The GPU profile's NHWC path (channels_last) runs on the CPU too.
    module, dm, eff = build(project, "ae_res")
    module = instantiate(eff["model"], _recursive_=False, variant="ae_res", scale=2, channels=3,
                         total_steps=4, clip_val=1.0, channels_last=True).to(memory_format=torch.channels_last)
    fast_dev_run(module, dm)
    assert math.isfinite(module.val_results["val/psnr_y"])


L1_THEN_MSE = ["+models.ae.losses.l1.active=[0,0.5]",
               "+models.ae.losses.mse={_target_: gensr.losses.MSELoss, weight: 1.0, active: [0.5, 1.0]}"]


def test_l1_then_mse_phases_follow_training_progress(project):
    # The `full` profile's recipe: L1 for the first part of the run, then MSE (what PSNR measures).
    module, dm, _ = build(project, "ae", L1_THEN_MSE)
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
                        use_distributed_sampler=False)
    seen = []
    original = module.log_terms
    module.log_terms = lambda terms, total=None, prefix="train": (seen.append(sorted(terms)),
                                                                  original(terms, total, prefix))
    trainer.fit(module, datamodule=dm)
    assert seen == [["l1"], ["l1"], ["mse"], ["mse"]]


def test_pixel_loss_phases_must_cover_the_run(project):
    gap = ["+models.ae.losses.l1.active=[0,0.5]",
           "+models.ae.losses.mse={_target_: gensr.losses.MSELoss, weight: 1.0, active: [0.6, 1.0]}"]
    with pytest.raises(Exception, match="no pixel loss is active at 50% of training"):
        build(project, "ae", gap)


@pytest.mark.parametrize("variant", ["gan", "vae"])
def test_fine_tune_starts_from_the_model_it_names(project, variant):
    """init_from really loads the PSNR model's weights (the VAE keeps its new posterior and injection)."""
    from gensr.checkpoint import save_model

    src_module, _, src_eff = build(project, "ae_res")
    torch.manual_seed(1)
    for p in src_module.net.parameters():  # distinct from any fresh initialisation
        p.data.normal_(0, 0.1)
    path = project / "models" / "ae_res" / "model.pt"
    save_model(path, plain(src_eff["model"]["net"]), src_module.net.state_dict(),
               {"variant": "ae_res", "scale": 2, "channels": 3})
    module, _, _ = build(project, variant, [f"models.{variant}.init_from={path}", f"train_from.{variant}={path}"])
    got, want = module.net.state_dict(), src_module.net.state_dict()
    assert set(want) <= set(got)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert set(got) - set(want) == set(getattr(module.net, "init_new_parameters", tuple)())


def test_network_interpolation_blends_weight_by_weight():
    from gensr.checkpoint import CheckpointMismatchError, interpolate_weights

    psnr = {"w": torch.zeros(2, 2), "n": torch.tensor(3)}
    gan = {"w": torch.ones(2, 2) * 4, "n": torch.tensor(7)}
    assert torch.equal(interpolate_weights(psnr, gan, 0.0)["w"], gan["w"])
    assert torch.equal(interpolate_weights(psnr, gan, 1.0)["w"], psnr["w"])
    half = interpolate_weights(psnr, gan, 0.25)
    assert torch.allclose(half["w"], torch.full((2, 2), 3.0)) and int(half["n"]) == 7  # counters: the GAN's
    with pytest.raises(ValueError, match=r"psnr_share must be in \[0, 1\]"):
        interpolate_weights(psnr, gan, 1.5)
    with pytest.raises(CheckpointMismatchError, match="same architecture"):
        interpolate_weights({"w": torch.zeros(3)}, gan, 0.5)


def test_gan_psnr_share_validates_and_ships_the_blend(project):
    """psnr_share: the weights validated and written to model.pt are (1 - s) * EMA + s * init_from."""
    from gensr.checkpoint import save_model

    src_module, _, src_eff = build(project, "ae_res")
    torch.manual_seed(1)
    for p in src_module.net.parameters():
        p.data.normal_(0, 0.1)
    path = project / "models" / "ae_res" / "model.pt"
    save_model(path, plain(src_eff["model"]["net"]), src_module.net.state_dict(),
               {"variant": "ae_res", "scale": 2, "channels": 3})
    psnr = {k: v.clone() for k, v in src_module.net.state_dict().items()}
    module, dm, _ = build(project, "gan", [f"models.gan.init_from={path}", f"train_from.gan={path}",
                                           "models.gan.psnr_share=0.25"])
    ema = EMA(0.5)
    fast_dev_run(module, dm, ema)
    shipped = ema.ema_state_dict(module)
    for k, v in ema.shadow.items():
        if v.is_floating_point():
            assert torch.allclose(shipped[k], 0.75 * v + 0.25 * psnr[k], atol=1e-6), k
    moved = [k for k, v in ema.shadow.items() if v.is_floating_point() and not torch.equal(v, psnr[k])]
    assert moved, "training changed nothing, so the blend is not tested"
    # Validation ran on the blend, then the raw training weights came back.
    raw = module.net.state_dict()
    assert any(not torch.equal(raw[k], shipped[k]) for k in moved)


def test_gan_psnr_share_needs_a_model_to_blend_with(project):
    from gensr.schema import ConfigError, validate

    cfg = compose([*tiny_overrides("gan"), "models.gan.init_from=null", "train_from.gan=pipelines/train.py",
                   "models.gan.psnr_share=0.3"], root=project)
    with pytest.raises(ConfigError, match=r"models.gan.psnr_share=0.3: .*init_from is null"):
        validate(cfg)
    with pytest.raises(ConfigError, match=r"models.gan.psnr_share=1.5: must be"):
        validate(compose([*tiny_overrides("gan"), "models.gan.psnr_share=1.5"], root=project))
