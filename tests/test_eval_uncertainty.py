"""The report's uncertainty maps for variational models, and the fidelity / perceptual champions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import eval_fixtures as fx
from gensr.evaluate import results
from gensr.evaluate.compare import Layout, Panels, comparison_picture, detail_crop
from gensr.data.resize import bicubic_upscale
from gensr.evaluate.inference import upscale
from gensr.evaluate.sets import bicubic_degrade
from gensr.evaluate.uncertainty import Draws, display_max, heat_map, sample_std
from gensr.archs import is_variational

SCALE = 2


@pytest.fixture(scope="module")
def pair():
    hr = fx.photo("astronaut", 96, 96).astype(np.float32) / 255.0
    return hr, bicubic_degrade(hr, SCALE)


def test_uncertainty_map_is_nonzero_and_seeded(pair):
    hr, lr = pair
    net = fx.variational_net(SCALE)
    box = detail_crop(hr, 32, SCALE, border=SCALE)
    a = sample_std(net, lr, SCALE, box, Draws(samples=8, seed=0))
    assert a.shape == (32, 32) and a.dtype == np.float32
    assert a.min() >= 0 and a.mean() > 1e-3, "a variational net's samples must differ"
    assert np.array_equal(a, sample_std(net, lr, SCALE, box, Draws(samples=8, seed=0)))  # same seed, same map
    b = sample_std(net, lr, SCALE, box, Draws(samples=8, seed=1))
    assert not np.array_equal(a, b) and np.abs(a - b).mean() > 1e-4
    # The map is of the crop: sampling a window with context, even at the image's corner.
    corner = sample_std(net, lr, SCALE, (0, 0, 32), Draws(samples=4, seed=0))
    assert corner.shape == (32, 32) and corner.mean() > 1e-3
    # Sampling did not change what is evaluated and exported: the deterministic output.
    with torch.no_grad():
        assert np.array_equal(upscale(net, lr, SCALE), upscale(net, lr, SCALE))


def test_only_variational_nets_get_a_map():
    assert is_variational(fx.variational_net(SCALE))
    from gensr.archs.ae_res import ResidualAttentionAE

    for net in (fx.UpsampleNet(SCALE), ResidualAttentionAE(SCALE, features=8, n_blocks=1, latent=4)):
        assert not is_variational(net)


def test_heat_map_panel_sits_beside_the_models_crop(pair):
    hr, lr = pair
    net = fx.variational_net(SCALE)
    outputs = {"bicubic": bicubic_upscale(lr, SCALE), "vae": upscale(net, lr, SCALE)}
    psnrs = {"bicubic": 30.0, "vae": 31.0}
    box = detail_crop(hr, 32, SCALE, border=SCALE)
    std = sample_std(net, lr, SCALE, box, Draws(seed=0))
    layout = Layout(32, 64, columns=10)
    plain, _ = comparison_picture(hr, lr, Panels(outputs, psnrs), SCALE, layout, box=box)
    with_map, _ = comparison_picture(hr, lr, Panels(outputs, psnrs, {"vae": std}), SCALE, layout, box=box)
    cell = 64 + 6  # panel + gap
    assert with_map.shape[1] == plain.shape[1] + cell  # one panel more: thumbnail, LR, bicubic, vae, std, HR
    # The 5th panel (after the vae's crop) is the heat map, nearest-neighbour enlarged.
    vmax = display_max(std)
    expected = (heat_map(std, vmax) * 255).round().astype(np.uint8)
    panel = with_map[6 + 22 : 6 + 22 + 64, 6 + 4 * cell : 6 + 4 * cell + 64][::2, ::2]
    assert np.abs(panel.astype(int) - expected.astype(int)).max() <= 1
    # The scale: 0 is black, the labelled maximum bright yellow.
    ends = heat_map(np.array([[0.0, vmax / 255.0]]), vmax)[0]
    assert ends[0].max() < 0.05 and ends[1][0] > 0.9 and ends[1][1] > 0.9 and ends[1][2] < 0.7


def _summary(psnr: dict[str, float], texture: dict[str, float]) -> dict:
    return {"test": {m: {"psnr_y": psnr[m], "texture_distance": texture[m]} for m in psnr}}


def test_perceptual_champion_is_best_texture_among_models_clearly_above_bicubic():
    s = _summary({"bicubic": 30.0, "ae_res": 32.0, "gan": 31.2, "noisy": 30.5},
                 {"bicubic": 0.30, "ae_res": 0.20, "gan": 0.12, "noisy": 0.05})
    names = ["ae_res", "gan", "noisy"]
    assert results.champion(s, "test", names)["variant"] == "ae_res"
    p = results.perceptual_champion(s, "test", names, 1.0)
    # "noisy" has the best texture score but is only 0.5 dB above bicubic: not eligible.
    assert p == {"variant": "gan", "psnr_y": 31.2, "set": "test", "texture_distance": 0.12, "min_psnr_y": 31.0,
                 "qualified": True, "fallback": None,
                 "rule": "lowest texture_distance among variants with psnr_y >= bicubic + 1 dB on test"}
    assert results.perceptual_champion(s, "test", names, 0.25)["variant"] == "noisy"
    tie = _summary({"bicubic": 30.0, "a": 32.0, "b": 32.0}, {"bicubic": 0.3, "a": 0.1, "b": 0.1})
    assert results.perceptual_champion(tie, "test", ["b", "a"], 1.0)["variant"] == "b"  # first listed


def test_perceptual_champion_falls_back_to_the_fidelity_champion_and_says_so():
    s = _summary({"bicubic": 30.0, "ae": 30.8, "gan": 30.1}, {"bicubic": 0.3, "ae": 0.25, "gan": 0.1})
    p = results.perceptual_champion(s, "test", ["ae", "gan"], 1.0)
    assert p["variant"] == "ae" == results.champion(s, "test", ["ae", "gan"])["variant"]
    assert p["qualified"] is False and p["texture_distance"] == 0.25
    assert p["fallback"] == ("no variant reached bicubic + 1 dB (31.00 dB PSNR-Y on test): "
                             "the fidelity champion ae stands in")


def test_new_settings_are_validated_naming_the_key():
    from gensr import schema

    bad = {"evaluate": {"uncertainty": {"samples": 1, "seed": -1}, "perceptual_min_gain_db": "1dB"}}
    assert schema.problems(bad) == ["evaluate.perceptual_min_gain_db=1dB: must be a number",
                                    "evaluate.uncertainty.samples=1: must be an integer >= 2",
                                    "evaluate.uncertainty.seed=-1: must be an integer >= 0"]
    good = {"evaluate": {"uncertainty": {"samples": 8, "seed": 0}, "perceptual_min_gain_db": 1.0}}
    assert schema.problems(good) == []
