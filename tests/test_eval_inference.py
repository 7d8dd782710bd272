"""Evaluation runs its torch generators through the production tiler (gensr.infer.tiling)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import eval_fixtures as fx
from gensr.errors import BadInputError
from gensr.evaluate.inference import upscale, upscale_self_ensemble
from gensr.infer.tiling import tile_spans

SCALE = 2


def _forward(net, lr: np.ndarray) -> np.ndarray:
    """What evaluation computed before it tiled: one plain forward pass, clamped."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None]
        return net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_an_image_inside_one_tile_is_bit_identical_to_a_plain_forward_pass(kind, tmp_path):
    from gensr.checkpoint import load_model

    net, _ = load_model(fx.write_model(tmp_path, kind, SCALE, kind=kind))
    for h, w in ((45, 70), (32, 32)):
        lr = np.random.default_rng(h).random((h, w, 3)).astype(np.float32)
        expected = _forward(net.eval(), lr)
        for tile in (0, 32 if (h, w) == (32, 32) else 256):  # whole image, or exactly one tile
            out = upscale(net, lr, SCALE, tile=tile, overlap=16)
            assert out.dtype == np.float32 and np.array_equal(out, expected), (h, w, tile)


def test_the_generator_sees_the_tiles_of_the_production_tiler():
    net = fx.UpsampleNet(SCALE, sharpen=1.0)
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[2:])))
    lr = np.random.default_rng(1).random((45, 70, 3)).astype(np.float32)
    out = upscale(net, lr, SCALE, tile=32, overlap=16)
    rows, cols = tile_spans(45, 32, 16), tile_spans(70, 32, 16)
    assert seen == [(th, tw) for _, th in rows for _, tw in cols] and len(seen) > 4
    assert out.shape == (90, 140, 3) and 0 <= out.min() and out.max() <= 1  # clamped per tile
    seen.clear()
    ensemble = upscale_self_ensemble(net, lr, SCALE, tile=32, overlap=16)
    assert len(seen) == 8 * len(rows) * len(cols) and ensemble.shape == out.shape


def test_a_tile_the_tiler_cannot_use_is_a_setting_error():
    net = fx.UpsampleNet(SCALE)
    lr = np.zeros((16, 16, 3), np.float32)
    with pytest.raises(BadInputError, match=r"evaluate.tile 20: .* evaluate.tile_overlap \+ 8 = 24"):
        upscale(net, lr, SCALE, tile=20, overlap=16)
