"""Each loss on inputs whose value is known, plus weights, names and gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gensr import metrics
from gensr.losses import (
    AdversarialLoss,
    BandEnergyLoss,
    CharbonnierLoss,
    GradientPenalty,
    KLLoss,
    L1ActivityLoss,
    L1Loss,
    MSELoss,
    R1Penalty,
    SSIMLoss,
    StructureTensorLoss,
    StyleLoss,
    build_losses,
    gram,
)

GEN = torch.Generator().manual_seed(0)
A = torch.rand(2, 3, 32, 32, generator=GEN)
B = torch.rand(2, 3, 32, 32, generator=GEN)


@pytest.mark.parametrize("cls", [L1Loss, MSELoss, CharbonnierLoss, SSIMLoss, StyleLoss])
def test_pixel_losses_zero_for_identical_positive_otherwise(cls):
    loss = cls()
    same = loss(A, A.clone()).item()
    assert same == pytest.approx(0.0, abs=1.1e-3)  # Charbonnier's floor is eps = 1e-3
    assert loss(A, B).item() > same + 1e-5
    sr = A.clone().requires_grad_(True)
    loss(sr, B).backward()
    assert torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0


def test_l1_mse_values_and_weight():
    d = torch.full((1, 1, 4, 4), 0.25)
    assert L1Loss()(d, torch.zeros_like(d)).item() == pytest.approx(0.25)
    assert MSELoss()(d, torch.zeros_like(d)).item() == pytest.approx(0.0625)
    loss = L1Loss(weight=3.0, name="pix")
    assert loss.name == "pix"
    assert loss(d, torch.zeros_like(d)).item() == pytest.approx(0.75)
    assert loss.compute(d, torch.zeros_like(d)).item() == pytest.approx(0.25)


def test_charbonnier_matches_l1_for_large_and_l2_for_small_errors():
    big = torch.full((1, 1, 8, 8), 0.5)
    assert CharbonnierLoss(eps=1e-3)(big, torch.zeros_like(big)).item() == pytest.approx(0.5, rel=1e-5)
    tiny = torch.full((1, 1, 8, 8), 1e-5)
    # sqrt(d^2 + eps^2) ~ eps + d^2 / (2 eps) for d << eps: quadratic, not linear, in d.
    assert CharbonnierLoss(eps=1e-3)(tiny, torch.zeros_like(tiny)).item() == pytest.approx(1e-3 + 5e-8, rel=1e-4)


@pytest.mark.parametrize("cls", [L1Loss, MSELoss, CharbonnierLoss])
def test_luma_weight_blends_the_rgb_loss_with_the_loss_on_psnr_y_luma(cls):
    # luma_weight 0 is the plain RGB loss, bit for bit (what every existing config trains with).
    assert cls(luma_weight=0.0)(A, B).item() == cls()(A, B).item()
    # A colour change that keeps BT.601 luma (what PSNR-Y sees): the luma-only loss ignores it,
    # the RGB loss does not, and a blend sits in between in proportion.
    y = torch.tensor([65.481, 128.553, 24.966]) / 255.0
    along = torch.tensor([1.0, 0.0, 0.0]) - y[0] / y[1] * torch.tensor([0.0, 1.0, 0.0])  # y . along = 0
    target = A * 0.5 + 0.25  # room to add the colour change inside [0, 1]
    chroma_only = target + 0.1 * along.view(1, 3, 1, 1)
    assert metrics.psnr_y(chroma_only[0].permute(1, 2, 0).numpy() * 255.0,
                          target[0].permute(1, 2, 0).numpy() * 255.0) > 60
    eps = 1e-3 if cls is CharbonnierLoss else 0.0  # Charbonnier's floor on a zero error
    assert cls(luma_weight=1.0)(chroma_only, target).item() == pytest.approx(eps, abs=1e-6)
    rgb = cls()(chroma_only, target).item()
    assert rgb > eps + 1e-4
    assert cls(luma_weight=0.25)(chroma_only, target).item() == pytest.approx(0.75 * rgb + 0.25 * eps, rel=1e-5)
    with pytest.raises(ValueError, match="luma_weight"):
        cls(luma_weight=1.5)


def test_ssim_loss_agrees_with_the_reporting_metric():
    rng = np.random.default_rng(0)
    a = rng.random((48, 40))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ta, tb = (torch.from_numpy(x).float()[None, None] for x in (a, b))
    ours = 1.0 - SSIMLoss()(ta, tb).item()
    ref = metrics.ssim(a * 255.0, b * 255.0)
    assert ours == pytest.approx(ref, abs=2e-3)
    assert SSIMLoss()(ta, 1 - ta).item() > 1.0  # anti-correlated: SSIM < 0


def test_gram_and_style_loss():
    f = torch.randn(2, 5, 6, 7)
    g = gram(f)
    assert g.shape == (2, 5, 5) and torch.allclose(g, g.transpose(1, 2))
    # Gram matrices compare texture statistics, not pixels: two crops of one smooth texture are
    # closer in style than a crop of it and a crop of sharp noise (though all pixels differ).
    style = StyleLoss()
    noise = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    smooth = torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2)
    same_texture = style(smooth[..., :48, :48], smooth[..., 48:, 48:]).item()
    other_texture = style(smooth[..., :48, :48], noise[..., 48:, 48:]).item()
    assert 0 < 5 * same_texture < other_texture
    assert L1Loss()(smooth[..., :48, :48], smooth[..., 48:, 48:]).item() > 0.05
    # Single-channel images work (repeated to 3 channels); the extractor is not trainable state.
    assert style(A[:, :1], B[:, :1]).item() > 0
    assert list(style.parameters()) == [] and style.state_dict() == {}
    # Rebuilt from its seed: identical in every process.
    assert StyleLoss(seed=7)(A, B).item() == StyleLoss(seed=7)(A, B).item()


@pytest.mark.parametrize("gan_type", ["vanilla", "lsgan", "hinge"])
def test_adversarial_signs_and_gradients(gan_type):
    adv = AdversarialLoss(gan_type=gan_type, weight=1.0)
    good_fake, bad_fake = torch.full((4, 1), 3.0), torch.full((4, 1), -3.0)
    # Generator: fakes the critic calls real (high logits) cost less.
    assert adv(good_fake).item() < adv(bad_fake).item()
    fake = torch.full((4, 1, 5, 5), 0.5, requires_grad=True)
    adv(fake).backward()
    assert (fake.grad < 0).all()  # raising the fake's logit lowers the generator loss
    # Discriminator: a critic that separates real (+3) from fake (-3) has lower loss than a fooled one.
    assert adv.discriminator_loss(good_fake, bad_fake).item() < adv.discriminator_loss(bad_fake, good_fake).item()
    real = torch.full((4, 1), 0.5, requires_grad=True)
    fake2 = torch.full((4, 1), 0.5, requires_grad=True)
    adv.discriminator_loss(real, fake2).backward()
    assert (real.grad < 0).all() and (fake2.grad > 0).all()


def test_adversarial_known_values_and_bad_type():
    zero = torch.zeros(3, 1)
    assert AdversarialLoss(gan_type="vanilla", weight=1)(zero).item() == pytest.approx(math.log(2))
    assert AdversarialLoss(gan_type="lsgan", weight=1)(zero).item() == pytest.approx(1.0)
    assert AdversarialLoss(gan_type="hinge", weight=1).discriminator_loss(zero, zero).item() == pytest.approx(2.0)
    assert AdversarialLoss(gan_type="hinge", weight=0.5)(torch.ones(2, 1)).item() == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="gan_type"):
        AdversarialLoss(gan_type="wasserstein")


def test_kl_zero_at_prior_positive_elsewhere():
    zeros = torch.zeros(2, 4, 3, 3)
    assert KLLoss()(zeros, zeros).item() == pytest.approx(0.0, abs=1e-7)
    # KL(N(1, 1) || N(0, 1)) = 1/2 per element.
    assert KLLoss()(torch.ones_like(zeros), zeros).item() == pytest.approx(0.5)
    # KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2 per element.
    assert KLLoss()(zeros, torch.ones_like(zeros)).item() == pytest.approx((math.e - 2) / 2)


def test_l1_activity():
    z = torch.tensor([[-1.0, 0.0, 2.0, 1.0]])
    assert L1ActivityLoss(weight=2.0)(z).item() == pytest.approx(2.0)


def test_r1_and_gradient_penalty():
    disc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(4, 1, 3))
    real, fake = A[:, :, :16, :16], B[:, :, :16, :16]
    r1 = R1Penalty(weight=1.0)(disc, real)
    gp = GradientPenalty(weight=1.0)(disc, real, fake)
    assert r1.item() > 0 and gp.item() > 0
    (r1 + gp).backward()  # double backward reaches the discriminator's weights
    weights = [p for p in disc.parameters() if p.dim() > 1]  # biases do not change grad_x D
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in weights)
    # A linear critic D(x) = sum(k * x) has gradient k everywhere: R1 = 0.5 * ||k||^2 exactly.
    lin = torch.nn.Conv2d(3, 1, 16, bias=False)
    want = 0.5 * lin.weight.pow(2).sum().item()
    assert R1Penalty()(lin, real).item() == pytest.approx(want, rel=1e-5)


def test_build_losses_names_by_key_and_skips_null():
    cfg = {
        "pix": {"_target_": "gensr.losses.L1Loss", "weight": 0.5},
        "kl": {"_target_": "gensr.losses.KLLoss", "weight": 1e-3, "name": "beta_kl"},
        "style": None,
    }
    losses = build_losses(cfg)
    assert list(losses) == ["pix", "kl"]
    assert losses["pix"].name == "pix" and losses["kl"].name == "beta_kl" and losses["pix"].weight == 0.5
    with pytest.raises(TypeError, match="losses.bad"):
        build_losses({"bad": {"_target_": "torch.nn.L1Loss"}})


def test_active_phase_switches_a_term_on_and_off():
    from gensr.losses import L1Loss, MSELoss

    l1, mse = L1Loss(active=(0.0, 0.8)), MSELoss(active=[0.8, 1.0])
    assert l1.is_active(0.0) and l1.is_active(0.79) and not l1.is_active(0.8) and not l1.is_active(1.0)
    assert not mse.is_active(0.5) and mse.is_active(0.8) and mse.is_active(1.0)
    assert "active=[0.8, 1.0]" in repr(mse) and "active" not in repr(L1Loss())
    for bad in ((0.5, 0.5), (-0.1, 1.0), (0.2, 1.5)):
        with pytest.raises(ValueError, match="active must be"):
            L1Loss(active=bad)


def _texture(seed: int, size: int = 64) -> torch.Tensor:
    """A natural-ish texture: white noise with a 1/f spectrum, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    spec = torch.fft.rfft2(torch.randn(1, 3, size, size, generator=g))
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    img = torch.fft.irfft2(spec / (fx**2 + fy**2).sqrt().clamp(min=1 / size), s=(size, size))
    return ((img - img.min()) / (img.max() - img.min())).clamp(0, 1)


def test_band_energy_rewards_detail_of_the_right_strength_not_its_exact_pixels():
    from gensr.losses.frequency import gaussian_blur

    loss = BandEnergyLoss(window=8)
    hr = _texture(0)
    blurred = gaussian_blur(hr, 1.0)
    shifted = torch.roll(hr, shifts=(1, 1), dims=(2, 3))  # same detail, one pixel off
    noisy = (hr + 0.2 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert loss(hr, hr).item() == pytest.approx(0.0, abs=1e-6)
    # A pixel loss calls the shifted copy worse than the blur; the energy loss sees it is the sharp one.
    assert F.l1_loss(shifted, hr) > F.l1_loss(blurred, hr)
    assert loss(shifted, hr) < 0.25 * loss(blurred, hr)
    assert loss(noisy, hr) > loss(shifted, hr)  # too much energy is penalised as well as too little
    blurred.requires_grad_(True)
    loss(blurred, hr).backward()
    assert torch.isfinite(blurred.grad).all() and blurred.grad.abs().sum() > 0
    assert BandEnergyLoss(weight=2.0)(blurred, hr).item() == pytest.approx(2 * loss(blurred, hr).item(), rel=1e-5)


def test_structure_loss_is_the_texture_metric_and_sees_orientation_not_phase():
    from gensr.evaluate.texture import texture_distance
    from gensr.losses.frequency import gaussian_blur

    loss = StructureTensorLoss()
    hr = _texture(0)
    blurred = gaussian_blur(hr, 1.0)
    shifted = torch.roll(hr, shifts=(1, 1), dims=(2, 3))
    assert loss(hr, hr).item() < 1e-3
    assert loss(shifted, hr) < 0.75 * loss(blurred, hr)  # a shift inside a patch costs less than blur, and...
    # ...not orientation-free: stripes turned by 90 degrees have the same local energy everywhere
    # (BandEnergyLoss sees nothing) but the wrong direction.
    i = torch.arange(64, dtype=torch.float32)
    vertical = (0.5 + 0.3 * torch.sin(2.2 * i)).view(1, 1, 1, -1).expand(1, 3, 64, 64)
    horizontal = vertical.transpose(2, 3)
    blur_v = gaussian_blur(vertical, 1.0)
    assert BandEnergyLoss(window=8)(horizontal, vertical) < 0.1 * BandEnergyLoss(window=8)(blur_v, vertical)
    assert loss(horizontal, vertical) > 2 * loss(blur_v, vertical)
    # One implementation: the loss (eps aside) is the evaluate stage's texture distance.
    as_img = lambda t: (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img_b, img_h = as_img(blurred), as_img(hr)
    q = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    assert loss(q(img_b), q(img_h)).item() == pytest.approx(texture_distance(img_b, img_h), rel=2e-3)
    # Its gradient is finite even on flat patches, and descending it restores detail.
    x = torch.full_like(hr, 0.5).requires_grad_(True)
    loss(x, hr).backward()
    assert torch.isfinite(x.grad).all()
    x = blurred.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.01)
    start = loss(x, hr).item()
    for _ in range(30):
        opt.zero_grad()
        loss(x, hr).backward()
        opt.step()
    assert loss(x, hr).item() < 0.7 * start
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="octaves must be"):
            StructureTensorLoss(octaves=bad)
