"""The conditional VAE on the ae_res backbone (`vae`, conf/model/vae_res.yaml): a posterior that sees
HR, an injection that starts at zero (the VAE starts as the ae_res it is initialised from), neither
in the deterministic graph, and a VAEModule that feeds hr to it and trains its new parts faster."""
from __future__ import annotations

import onnx
import pytest
import torch
from hydra.utils import instantiate

from gensr.archs.ae_res import ResidualAttentionAE
from gensr.checkpoint import load_init, save_model
from gensr.config import compose
from gensr.export.onnx_export import export_onnx
from gensr.training.base import plain
from gensr.training.run import effective_config
from test_train_modules import build, fast_dev_run
from train_fixtures import tiny_overrides

SPEC = {"_target_": "gensr.archs.ae_res.ResidualAttentionAE", "scale": 2, "channels": 3, "features": 8,
        "n_blocks": 1, "latent": 4}
META = {"variant": "vae", "scale": 2, "channels": 3}


def _trained_like_ae(seed: int = 0) -> ResidualAttentionAE:
    """An ae_res with every weight non-zero (its zero-initialised output conv would hide the decoder)."""
    torch.manual_seed(seed)
    ae = instantiate(SPEC)
    with torch.no_grad():
        for p in ae.parameters():
            p.normal_(0.0, 0.1)
    return ae.eval()


def _cvae(noise_channels: int = 3) -> ResidualAttentionAE:
    torch.manual_seed(1)
    return instantiate({**SPEC, "variational": True, "noise_channels": noise_channels}).eval()


def test_the_posterior_sees_hr():
    net = _cvae()
    lr = torch.rand(2, 3, 11, 13, generator=torch.Generator().manual_seed(0))
    hr_a, hr_b = (torch.rand(2, 3, 22, 26, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    with torch.no_grad():
        mu_a, logvar_a = net.posterior(lr, hr_a)
        mu_b, _ = net.posterior(lr, hr_b)
        assert mu_a.shape == logvar_a.shape == (2, 3, 6, 7)  # the bottleneck's resolution
        assert torch.equal(net.posterior(lr, hr_a)[0], mu_a)
        assert (mu_a - mu_b).abs().mean() > 0.1 * mu_a.abs().mean()
        # forward_train reports the posterior of the hr it was given.
        _, mu, logvar = net.forward_train(lr, hr_a, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mu, mu_a) and torch.equal(logvar, logvar_a)


def test_initialised_from_an_ae_res_file_it_is_that_ae_res(tmp_path):
    ae = _trained_like_ae()
    path = save_model(tmp_path / "ae.pt", SPEC, ae.state_dict(), {**META, "variant": "ae_res"})
    vae = _cvae()
    assert load_init(vae, path, "models.vae.net", scale=2, channels=3)["variant"] == "ae_res"
    lr, hr = torch.rand(2, 3, 15, 9), torch.rand(2, 3, 30, 18)
    with torch.no_grad():
        expected = ae(lr)
        assert torch.equal(vae(lr), expected)
        # The zero injection: neither a prior sample nor the posterior's z changes anything yet.
        assert torch.equal(vae.sample(lr, generator=torch.Generator().manual_seed(0)), expected)
        assert torch.equal(vae.forward_train(lr, hr)[0], expected)
        # Once the injection has weights, z reaches the output, and z = 0 is still ae_res.
        torch.nn.init.normal_(vae.inject.up[0].weight, std=0.1)
        sample = vae.sample(lr, generator=torch.Generator().manual_seed(0))
        assert (sample - expected).abs().max() > 1e-3
        assert torch.equal(vae(lr), expected)
        assert torch.equal(vae.sample(lr, noise=torch.zeros(vae.noise_shape(2, 15, 9))), expected)


def test_seeds_and_noise_shape():
    vae = _cvae(noise_channels=5)
    torch.nn.init.normal_(vae.inject.up[0].weight, std=0.1)
    torch.nn.init.normal_(vae.upsample.body[-1].weight, std=0.1)
    lr = torch.rand(1, 3, 7, 10)
    with torch.no_grad():
        a, b = (vae.sample(lr, generator=torch.Generator().manual_seed(4)) for _ in range(2))
        c = vae.sample(lr, generator=torch.Generator().manual_seed(5))
        eps = torch.randn(vae.noise_shape(1, 7, 10), generator=torch.Generator().manual_seed(4))
        half = vae.sample(lr, noise=eps, temperature=0.5)
        assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(vae.sample(lr, noise=eps), a)
        assert torch.equal(half, vae.sample(lr, noise=0.5 * eps))
    assert vae.noise_shape(1, 7, 10) == (1, 5, 4, 5) and a.shape == (1, 3, 14, 20)


def test_deterministic_onnx_holds_neither_posterior_nor_injection():
    ae, vae = _trained_like_ae(), _cvae()
    vae.load_state_dict(ae.state_dict(), strict=False)
    torch.nn.init.normal_(vae.inject.up[0].weight, std=0.1)

    def weights(proto: onnx.ModelProto) -> list[str]:
        return sorted(i.name for i in proto.graph.initializer)

    plain = weights(export_onnx(vae, META, opset=18))
    assert plain == weights(export_onnx(ae, META, opset=18))
    assert not [w for w in plain if "posterior" in w or "inject" in w]
    sampler = weights(export_onnx(vae, META, opset=18, sampler=True))
    assert any("inject" in w for w in sampler) and not any("posterior" in w for w in sampler)


def _module(project, variant: str, extra: list[str] = ()):
    module, _, eff = build(project, variant, list(extra))
    return module, eff


@pytest.mark.parametrize("model_conf, conditional", [("vae_res", True), ("vae", False)])
def test_vae_module_passes_hr_to_a_conditional_net_only(project, monkeypatch, model_conf, conditional):
    """The CVAE's forward_train gets (lr, hr); VariationalSR's (conf/model/vae.yaml) gets lr only."""
    if model_conf == "vae_res":  # every profile's vae
        module, dm, _ = build(project, "vae")
    else:  # VariationalSR: no init_from to null (tiny_overrides' "from scratch"), so build it here
        overrides = [o for o in tiny_overrides("vae") if not o.startswith("models.vae.init_from")]
        eff = effective_config(compose([*overrides, "model@models.vae=vae"], root=project))
        module = instantiate(eff["model"], _recursive_=False, variant="vae", scale=2, channels=3, total_steps=4)
        dm = build(project, "ae")[1]
    assert getattr(module.net, "conditional", False) == conditional
    calls, train = [], module.net.forward_train

    def spy(*args, **kwargs):
        calls.append((len(args), sorted(kwargs)))
        return train(*args, **kwargs)

    monkeypatch.setattr(module.net, "forward_train", spy)
    fast_dev_run(module, dm)
    assert calls == [(2 if conditional else 1, ["generator"])]


def test_new_parameters_learn_at_new_lr_scale_when_fine_tuned(project):
    """From an ae_res file the posterior and injection (absent from it) get new_lr_scale x the lr;
    from scratch (init_from null, as tiny_overrides trains) there is one group."""
    ae_module, ae_eff = _module(project, "ae_res")
    path = project / "models" / "ae_res" / "model.pt"
    save_model(path, plain(ae_eff["model"]["net"]), ae_module.net.state_dict(), {**META, "variant": "ae_res"})
    module, eff = _module(project, "vae", [f"models.vae.init_from={path}", f"train_from.vae={path}"])
    groups = module.configure_optimizers()["optimizer"].param_groups
    new = set(module.net.init_new_parameters())
    names = {id(p): n for n, p in module.net.named_parameters()}
    assert len(groups) == 2 and eff["model"]["new_lr_scale"] == 10
    assert {names[id(p)] for p in groups[1]["params"]} == new
    assert groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])
    assert len(groups[0]["params"]) + len(new) == len(names)
    scratch, _ = _module(project, "vae")
    assert len(scratch.configure_optimizers()["optimizer"].param_groups) == 1
