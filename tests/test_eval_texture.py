"""Weight-free texture measures (HF detail ratio, GMSD) and the optional local LPIPS model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from gensr.evaluate.inference import bicubic_upscale
from gensr.evaluate.sets import bicubic_degrade
from gensr.evaluate.texture import LpipsModel, gmsd, hf_ratio, lpips_note
from gensr.metrics import psnr_y


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    from skimage import data

    img = data.astronaut()[100:228, 150:278].astype(np.float32) / 255.0  # face + badge: real texture
    return img


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(img, (sigma, sigma, 0), mode="reflect")


def _sharpen(img: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(img + amount * (img - _blur(img, 1.0)), 0, 1)


def test_hr_against_itself_is_exactly_one_and_zero(hr):
    assert hf_ratio(hr, hr, 2) == pytest.approx(1.0)
    assert gmsd(hr, hr, 2) == pytest.approx(0.0, abs=1e-12)


def test_blur_ranks_below_sharp_and_bicubic_below_hr(hr):
    bic = bicubic_upscale(bicubic_degrade(hr, 2), 2)
    soft, softer = _blur(hr, 1.0), _blur(hr, 2.0)
    ratios = [hf_ratio(x, hr, 2) for x in (softer, soft, bic, hr)]
    assert ratios == sorted(ratios), f"detail ratio must grow with sharpness: {ratios}"
    assert ratios[2] < 0.8, f"bicubic x2 keeps far less than HR's detail: {ratios[2]:.3f}"
    # What a GAN does to bicubic-like output: more detail, visible as a higher ratio ...
    assert hf_ratio(_sharpen(bic, 1.5), hr, 2) > hf_ratio(bic, hr, 2) + 0.1
    # ... while over-sharpening HR itself overshoots 1.
    assert hf_ratio(_sharpen(hr, 1.0), hr, 2) > 1.2


def test_gmsd_grows_with_distortion_and_is_symmetric(hr):
    scores = [gmsd(_blur(hr, s), hr, 2) for s in (0.5, 1.0, 2.0)]
    assert scores == sorted(scores) and scores[0] > 0
    noisy = np.clip(hr + np.random.default_rng(0).normal(0, 0.05, hr.shape), 0, 1).astype(np.float32)
    assert gmsd(noisy, hr) == pytest.approx(gmsd(hr, noisy))
    assert gmsd(noisy, hr) > gmsd(_blur(hr, 0.5), hr)


def test_measures_refuse_mismatched_or_tiny_images(hr):
    with pytest.raises(ValueError, match="shape mismatch"):
        hf_ratio(hr[:-2], hr)
    with pytest.raises(ValueError, match="shape mismatch"):
        gmsd(hr, hr[:, :-2])
    with pytest.raises(ValueError, match="too small"):
        gmsd(hr[:8, :8], hr[:8, :8], border=2)


def test_grey_images_work(hr):
    grey = hr.mean(axis=2, keepdims=True)
    assert 0 < hf_ratio(_blur(grey, 1.0), grey) < 1
    assert gmsd(_blur(grey, 1.0), grey) > 0


class _MeanAbs(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean(dim=(1, 2, 3))


def test_lpips_runs_a_local_torchscript_model(tmp_path, hr):
    path = tmp_path / "lpips.pt"
    torch.jit.script(_MeanAbs()).save(str(path))
    model = LpipsModel(path)
    soft = _blur(hr, 1.0)
    # Inputs reach the model as NCHW in [-1, 1]: twice the [0, 1] mean absolute difference.
    assert model(soft, hr) == pytest.approx(2 * np.abs(soft - hr).mean(), rel=1e-5)
    assert model(hr, hr) == 0.0
    grey = hr[:, :, :1]
    assert model(grey, grey) == 0.0  # grey is repeated to the 3 channels LPIPS nets expect


def test_lpips_runs_a_local_onnx_model(tmp_path, hr):
    import onnx
    from onnx import TensorProto, helper

    shape = ["n", 3, "h", "w"]
    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["d"]), helper.make_node("Abs", ["d"], ["e"]),
         helper.make_node("ReduceMean", ["e"], ["dist"], keepdims=0)],
        "meanabs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("dist", TensorProto.FLOAT, [])],
    )
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model_proto.ir_version = 8
    path = tmp_path / "lpips.onnx"
    onnx.save(model_proto, str(path))
    soft = _blur(hr, 2.0)
    assert LpipsModel(path)(soft, hr) == pytest.approx(2 * np.abs(soft - hr).mean(), rel=1e-5)


def test_lpips_errors_name_the_file_and_the_note_explains_skipping(tmp_path):
    with pytest.raises(FileNotFoundError, match="lpips_weights"):
        LpipsModel(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.pt"):
        LpipsModel(junk)
    assert "skipped" in lpips_note(None) and "lpips_weights" in lpips_note(None)
    assert "junk.pt" in lpips_note(str(junk))


def test_bicubic_baseline_is_pil_bicubic_and_keeps_grey(hr):
    lr = bicubic_degrade(hr, 2)
    up = bicubic_upscale(lr, 2)
    assert up.shape == hr.shape and up.dtype == np.float32
    assert psnr_y(up, hr, 2) > 25  # sane, not a shifted or transposed image
    grey_up = bicubic_upscale(lr[:, :, :1], 2)
    assert grey_up.shape == (*hr.shape[:2], 1)
