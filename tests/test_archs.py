"""Every model config (`conf/model/*.yaml`) builds a generator honouring the SR interface.

Parametrized over the files themselves (timm style), so a new variant is tested by existing.
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from gensr.archs import LatentDiscriminator, UNetDiscriminator, VariationalSR, VGGDiscriminator
from gensr.config import compose
from gensr.losses import build_losses

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
ODD_SIZES = [(7, 9), (17, 23)]
LOSS_INPUTS = {"pixel", "posterior", "latent", "adversarial", "critic_reg"}


@functools.lru_cache(maxsize=None)
def _cfg(scale: int, channels: int):
    # Model files that are no default variant (vae_res, swapped in by the full profile) join too.
    defaults = compose([], root=ROOT).models
    extra = [f"+model@models.{v}={v}" for v in VARIANTS if v not in defaults]
    return compose([*extra, f"data.channels={channels}", f"degradation.scale={scale}"], root=ROOT)


def _net(variant: str, scale: int = 2, channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return instantiate(_cfg(scale, channels).models[variant].net)


def test_every_variant_has_a_config():
    assert set(VARIANTS) >= {"ae", "ae_res", "gan", "vae", "sparse_ae", "aae"}
    assert set(VARIANTS) == set(_cfg(2, 3).models)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shapes_backward_finite(variant, scale, channels):
    net = _net(variant, scale, channels).train()
    with torch.no_grad():  # zero-initialised output convs block gradients only until step one
        for p in net.parameters():
            if not p.any():
                p.normal_(0.0, 0.01)
    assert (net.scale, net.channels) == (scale, channels)
    total = 0.0
    # A variational ResidualAttentionAE uses its posterior and noise injection only in training
    # (its posterior sees the HR image: `conditional`).
    def run(x):
        if not getattr(net, "variational", False):
            return net(x)
        hr = torch.rand(*x.shape[:2], scale * x.shape[2], scale * x.shape[3])
        return net.forward_train(*((x, hr) if getattr(net, "conditional", False) else (x,)))[0]
    for h, w in ODD_SIZES:
        lr = torch.rand(2, channels, h, w)
        sr = run(lr)
        assert sr.shape == (2, channels, scale * h, scale * w)
        assert torch.isfinite(sr).all()
        total = total + sr.mean()
    total.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Every parameter takes part in the output (no dead branches).
    assert sum(bool(g.abs().sum() > 0) for g in grads) >= 0.95 * len(grads)


@pytest.mark.parametrize("variant", VARIANTS)
def test_latent_interface(variant):
    net = _net(variant).eval()
    lr = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        sr, z = net.encode_decode(lr)
        assert torch.allclose(sr, net(lr))
        enc = net.encode(lr)
        enc = enc[0] if isinstance(enc, tuple) else enc  # VAE: (mu, logvar); z = mu
    assert z.shape[:2] == (1, net.latent_channels)
    assert torch.equal(z, enc)


@pytest.mark.parametrize("variant", VARIANTS)
def test_untrained_residual_nets_start_at_bicubic(variant):
    """A global-residual net's learned branch starts at zero: before training it *is* its
    (bicubic-initialised) upsample of the input, so training starts from the bicubic baseline."""
    net = _net(variant, scale=3).eval()
    skip = getattr(net, "skip_up", None)
    if skip is None:
        pytest.skip(f"{variant}: no global residual")
    lr = torch.rand(1, 3, 8, 10)
    with torch.no_grad():
        assert torch.allclose(net(lr), skip(lr), atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_few_steps_reduce_l1(variant):
    """A few Adam steps on one fixed batch cut the L1 loss: gradients flow end to end.

    The target is a contrast-reduced, nearest-upsampled copy of the input: learnable in a few
    steps by every design, and far from what any of them outputs at initialisation (global
    residual nets start near the bilinear upsample of the input)."""
    net = _net(variant).train()
    gen = torch.Generator().manual_seed(1)
    lr = torch.rand(2, 3, 12, 12, generator=gen)
    hr = 0.25 + 0.5 * lr.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = (net(lr) - hr).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.85 * losses[0], losses


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_losses_and_discriminator_build(variant):
    model_cfg = _cfg(2, 3).models[variant]
    losses = build_losses(model_cfg.losses)
    assert "l1" in losses and all(loss.inputs in LOSS_INPUTS for loss in losses.values())
    assert all(loss.name == key for key, loss in losses.items())
    if "discriminator" not in model_cfg:
        assert not any(loss.inputs == "adversarial" for loss in losses.values())
        return
    disc = instantiate(model_cfg.discriminator)
    net = _net(variant)
    if isinstance(disc, LatentDiscriminator):  # aae: judges latent maps vs the N(0, I) prior
        _, z = net.encode_decode(torch.rand(2, 3, 15, 17))
        logits = disc(z)
        assert logits.shape == (2, 1, *z.shape[-2:])
    else:
        for size in (24, 33, 64):
            logits = disc(torch.rand(2, 3, size, size))
            assert logits.shape[0] == 2 and torch.isfinite(logits).all()
    assert any(loss.inputs == "adversarial" for loss in losses.values())


@pytest.mark.parametrize("detail_sigma", [0.0, 1.0])
@pytest.mark.parametrize("size", [16, 33, 64])
@pytest.mark.parametrize("cls", [VGGDiscriminator, UNetDiscriminator])
@pytest.mark.parametrize("channels", [1, 3])
def test_image_discriminators_any_patch(cls, channels, size, detail_sigma):
    disc = cls(channels=channels, features=8, detail_sigma=detail_sigma)
    x = torch.rand(2, channels, size, size, requires_grad=True)
    logits = disc(x)
    want = (2, 1) if cls is VGGDiscriminator else (2, 1, size, size)
    assert logits.shape == want
    logits.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_detail_input_shows_the_critic_what_blur_removes():
    from gensr.archs.discriminators import DetailInput

    torch.manual_seed(0)
    sharp = torch.rand(1, 3, 32, 32)
    flat = torch.full((1, 3, 32, 32), 0.5)
    out = DetailInput(sigma=1.0, gain=4.0)(torch.cat([sharp, flat]))
    assert out.shape == (2, 6, 32, 32)
    assert torch.equal(out[:, :3], torch.cat([sharp, flat]))  # the image itself is kept
    assert out[0, 3:].abs().mean() > 0.1 and out[1, 3:].abs().max() < 1e-6  # detail band: texture only


def test_vae_sampling_is_seeded_and_diverse():
    net = VariationalSR(scale=2, channels=3, features=8, n_blocks=1, latent=4).eval()
    with torch.no_grad():
        for p in net.parameters():  # a non-trivial posterior: logvar well above its init
            p.add_(0.05 * torch.randn_like(p))
        lr = torch.rand(1, 3, 9, 7)
        det = net(lr)
        assert torch.equal(det, net(lr))  # z = mu by default
        a = net(lr, sample=True, generator=torch.Generator().manual_seed(3))
        b = net(lr, sample=True, generator=torch.Generator().manual_seed(3))
        c = net(lr, sample=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c) and not torch.allclose(a, det)
    sr, mu, logvar = net.forward_train(lr)
    assert sr.shape == det.shape and mu.shape == logvar.shape


@pytest.mark.parametrize("bad", [{"scale": 5}, {"channels": 2}])
def test_bad_scale_or_channels_refused(bad):
    kwargs = {"scale": 2, "channels": 3, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        VariationalSR(**kwargs)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upsample_blocks_match_reference_resizes(scale):
    import numpy as np

    from gensr.archs.blocks import LinearUpsample, nearest_upsample
    from gensr.data.resize import imresize

    x = torch.rand(2, 3, 7, 9)
    bilinear = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(LinearUpsample(3, scale, kernel="bilinear")(x), bilinear, atol=1e-6)
        # Bicubic init = MATLAB imresize (the benchmarks' bicubic) away from the border pixels.
        img = np.random.default_rng(0).random((12, 14))
        ours = LinearUpsample(1, scale)(torch.from_numpy(img).float()[None, None])[0, 0].numpy()
    inner = (slice(3 * scale, -3 * scale),) * 2
    assert np.abs(ours - imresize(img, scale))[inner].max() < 1e-5
    assert torch.equal(nearest_upsample(x, scale), x.repeat_interleave(scale, -2).repeat_interleave(scale, -1))


def test_plain_autoencoder_without_global_residual():
    from gensr.archs import ConvAutoencoder

    net = ConvAutoencoder(scale=3, channels=1, features=8, latent=4, global_residual=False, long_skip=False)
    assert net.skip_up is None
    sr, z = net.encode_decode(torch.rand(2, 1, 7, 9))
    assert sr.shape == (2, 1, 21, 27) and z.shape == (2, 4, 4, 5)
    assert torch.isfinite(sr).all()


def test_variational_ae_res_starts_as_the_autoencoder_it_is_initialised_from():
    """Every profile's VAE: ae_res weights load into it (only the posterior encoder and the noise
    injection are new), and with the injection at its zero init every output is ae_res's: z = 0,
    a sampled z, and the training pass with z from the HR-seeing posterior."""
    from gensr.archs.ae_res import ResidualAttentionAE

    torch.manual_seed(0)
    ae = ResidualAttentionAE(2, features=8, n_blocks=1, latent=4)
    with torch.no_grad():
        for p in ae.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    vae = ResidualAttentionAE(2, features=8, n_blocks=1, latent=4, variational=True, noise_channels=3)
    missing, unexpected = vae.load_state_dict(ae.state_dict(), strict=False)
    assert sorted(missing) == sorted(vae.init_new_parameters()) and not unexpected
    assert missing and all(k.startswith(("posterior.", "inject.")) for k in missing)
    lr, hr = torch.rand(1, 3, 11, 13), torch.rand(1, 3, 22, 26)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        expected = ae(lr)
        sampled, mu, logvar = vae.forward_train(lr, hr, generator=g)
        assert torch.equal(vae(lr), expected) and torch.equal(sampled, expected)
        assert torch.equal(vae.sample(lr, generator=g), expected)
    assert mu.shape == logvar.shape == (1, 3, 6, 7) and mu.abs().mean() > 0.01
    with pytest.raises(ValueError, match="variational=True"):
        ae.forward_train(lr, hr)


def _model_file(path: Path, net: torch.nn.Module, spec: dict) -> Path:
    from gensr.checkpoint import save_model

    return save_model(path, spec, net.state_dict(), {"variant": "src", "scale": 2, "channels": 3})


def test_load_init_is_strict_except_for_the_parameters_a_net_declares_new(tmp_path):
    """One loader for every init_from: the variational ResidualAttentionAE starts from the
    deterministic one (its posterior and noise injection are declared new); nothing else may be missing."""
    from gensr.archs.ae_res import ResidualAttentionAE
    from gensr.checkpoint import CheckpointMismatchError, load_init

    spec = {"_target_": "gensr.archs.ae_res.ResidualAttentionAE", "scale": 2, "features": 8, "n_blocks": 1,
            "latent": 4}
    torch.manual_seed(0)
    ae = instantiate(spec)
    for p in ae.parameters():
        p.data.normal_(0, 0.1)
    path = _model_file(tmp_path / "ae.pt", ae, spec)
    vae = ResidualAttentionAE(2, features=8, n_blocks=1, latent=4, variational=True)
    new_before = {k: v.clone() for k, v in vae.state_dict().items() if k not in ae.state_dict()}
    assert set(vae.init_new_parameters()) == set(new_before) and "inject.up.0.weight" in new_before
    assert ResidualAttentionAE(2, features=8, n_blocks=1, latent=4).init_new_parameters() == ()
    assert load_init(vae, path, "models.vae.net", scale=2, channels=3)["variant"] == "src"
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in ae.state_dict().items())
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in new_before.items())  # new parts keep their init

    wider = ResidualAttentionAE(2, features=16, n_blocks=1, latent=4)
    with pytest.raises(CheckpointMismatchError, match=r"ae\.pt: .*not the architecture of models\.x\.net "
                                                      r"\(weights of another shape dec\.0\.body\.0\.bias, .* and \d+ more\)"):
        load_init(wider, path, "models.x.net")
    # The other way round the new parts are unexpected: a variational file does not fit an autoencoder.
    vae_path = _model_file(tmp_path / "vae.pt", vae, {**spec, "variational": True})
    with pytest.raises(CheckpointMismatchError, match=r"vae\.pt: .*unexpected inject\.up\.0\.weight, posterior\."):
        load_init(ResidualAttentionAE(2, features=8, n_blocks=1, latent=4), vae_path, "models.x.net")
    # A net that declares nothing new loads strictly: another architecture is refused, keys named.
    with pytest.raises(CheckpointMismatchError, match=r"missing .* and \d+ more; unexpected"):
        load_init(instantiate({"_target_": "gensr.archs.ae.ConvAutoencoder", "scale": 2, "features": 8}), path,
                  "models.ae.net")


def test_rep_branches_fuse_to_the_same_function_and_a_plain_net(tmp_path):
    """`rep=True` trains each block conv as 3x3 + 1x1 + identity; a model file loads back fused
    (one 3x3 conv each: the plain net's parameters and FLOPs) with the same outputs, while
    `load_init` (a fine-tune's start, e.g. the GAN from ae_res) keeps the branches it trains."""
    from gensr.archs.ae_res import ResidualAttentionAE
    from gensr.archs.blocks import RepConv3
    from gensr.checkpoint import load_init, load_model

    spec = {"_target_": "gensr.archs.ae_res.ResidualAttentionAE", "scale": 2, "features": 8, "n_blocks": 1,
            "latent": 4, "rep": True}
    torch.manual_seed(0)
    net = instantiate(spec)
    for p in net.parameters():
        p.data.normal_(0, 0.1)
    assert sum(isinstance(m, RepConv3) for m in net.modules()) == 8  # 4 stages x 1 block x 2 convs
    path = _model_file(tmp_path / "rep.pt", net, spec)
    fused, _ = load_model(path)
    plain = ResidualAttentionAE(2, features=8, n_blocks=1, latent=4)
    assert not any(isinstance(m, RepConv3) for m in fused.modules())
    assert {k: v.shape for k, v in fused.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    lr = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        want, got = net.eval()(lr), fused(lr)
    assert (want - lr.repeat_interleave(2, -1).repeat_interleave(2, -2)).abs().max() > 0.1  # the branches matter
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

    gan = instantiate(spec)
    load_init(gan, path, "models.gan.net", scale=2, channels=3)
    assert all(torch.equal(gan.state_dict()[k], v) for k, v in net.state_dict().items())


def test_zero_last_starts_each_block_at_its_first_conv_only():
    """`zero_last`: a residual block's second conv (its 3x3 and 1x1 branches) starts at zero
    weights, so at init each block adds only its biases (and, for `rep`, the identity branch's copy
    of the first conv's output); the default keeps PyTorch's init."""
    from gensr.archs.blocks import ResidualBlock

    torch.manual_seed(0)
    x = torch.rand(1, 8, 9, 9)
    for rep in (False, True):
        block = ResidualBlock(8, attention=False, rep=rep, zero_last=True)
        second = block.body[2]
        weights = (second.conv3.weight, second.conv1.weight) if rep else (second.weight,)
        assert all(not w.any() for w in weights)
        delta = block(x) - x  # the second conv's biases (+ its identity branch of the first's output)
        assert (delta - (torch.relu(block.body[0](x)) if rep else 0) - (
            second.conv3.bias + second.conv1.bias if rep else second.bias)[:, None, None]).abs().max() < 1e-6
    assert ResidualBlock(8, zero_last=False).body[2].weight.abs().sum() > 0


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_direct_upsampler_keeps_every_conv_at_lr_resolution(scale):
    """`upsampler=direct`: one conv to 3 x scale^2 channels and one pixel shuffle, so no conv runs
    above the LR size (the progressive upsampler's last conv runs at the SR size); the net still
    starts as its bicubic skip and its output has the SR shape."""
    from gensr.archs.ae_res import ResidualAttentionAE

    lr = torch.rand(1, 3, 9, 11)
    largest = {}
    for kind in ("progressive", "direct"):
        torch.manual_seed(0)
        net = ResidualAttentionAE(scale, features=8, n_blocks=1, latent=4, upsampler=kind).eval()
        sizes = []
        hooks = [m.register_forward_hook(lambda m, x, y: sizes.append(x[0].shape[-2] * x[0].shape[-1]))
                 for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            sr = net(lr)
            assert sr.shape == (1, 3, 9 * scale, 11 * scale)
            assert torch.allclose(sr, net.skip_up(lr), atol=1e-6)
        for h in hooks:
            h.remove()
        largest[kind] = max(sizes)
    assert largest["direct"] == 9 * 11
    assert largest["progressive"] == 9 * 11 * scale**2  # its last conv runs at the SR size
    with pytest.raises(ValueError, match="progressive"):
        ResidualAttentionAE(scale, features=8, n_blocks=1, latent=4, upsampler="nearest")
