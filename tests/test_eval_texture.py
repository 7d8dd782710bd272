"""Weight-free texture measures (texture distance, HF detail ratio, GMSD) and the optional local
LPIPS model."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

import eval_fixtures as fx
from gensr.data.sources import EMBEDDED, embedded_array
from gensr.data.resize import bicubic_upscale
from gensr.evaluate.sets import bicubic_degrade
from gensr.evaluate.texture import LpipsModel, gmsd, hf_matched_noise, hf_ratio, lpips_note, texture_distance
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


@pytest.fixture(scope="module")
def scenes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (HR, its x2 bicubic SR): 256x256 centre crops of the eight photos of the `embedded`
    data source (portrait, fur, food, machinery, star field, retina, cells, motorbike) and a
    dead-leaves texture."""
    hrs = {}
    for name in EMBEDDED:
        img = embedded_array(name)
        y, x = (img.shape[0] - 256) // 2, (img.shape[1] - 256) // 2
        hrs[name] = img[y : y + 256, x : x + 256].astype(np.float32) / 255.0
    hrs["dead_leaves"] = fx.dead_leaves(256)
    return {name: (hr, bicubic_upscale(bicubic_degrade(hr, 2), 2)) for name, hr in hrs.items()}


def _jpeg(img: np.ndarray, quality: int = 10) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf)).astype(np.float32) / 255.0


def _hf_noise(hr: np.ndarray, base: np.ndarray, seed: int = 0) -> np.ndarray:
    """`base` plus grey Gaussian noise whose high-frequency RMS on Y equals HR's."""
    return np.clip(hf_matched_noise(hr, base, np.random.default_rng(seed)), 0, 1).astype(np.float32)


def test_texture_distance_is_zero_for_hr_only(scenes):
    for name, (hr, bic) in scenes.items():
        assert texture_distance(hr, hr, 2) == 0.0, name
        assert texture_distance(bic, hr, 2) > 0.1, name
        # Not symmetric in general (HR's detail amplitude sets the unit), but it is a distance.
        assert texture_distance(hr, bic, 2) > 0.0


def test_noise_matched_to_hr_detail_scores_worse_than_bicubic(scenes):
    """The failure of hf_ratio this measure exists for: noise with HR's high-frequency energy
    looks like restored detail to hf_ratio, and must not to the texture distance."""
    ratios = {}
    for name, (hr, bic) in scenes.items():
        noisy = _hf_noise(hr, bic)
        assert 1.0 <= hf_ratio(noisy, hr, 2) < 1.4 and hf_ratio(bic, hr, 2) < 0.8, name  # hf_ratio is fooled
        ratios[name] = texture_distance(noisy, hr, 2) / texture_distance(bic, hr, 2)
    assert all(r > 1.0 for r in ratios.values()), ratios
    # Grainy references (fur, cells, star field) leave the least margin; structured scenes a wide one.
    assert np.median(list(ratios.values())) > 1.4, ratios
    assert ratios["rocket"] > 2 and ratios["coffee"] > 2 and ratios["dead_leaves"] > 1.3, ratios


def test_jpeg_blocking_scores_worse_than_the_clean_image(scenes):
    for name, (hr, bic) in scenes.items():
        for label, clean in (("bicubic", bic), ("HR blurred 0.5", _blur(hr, 0.5))):
            blocky = _jpeg(clean, 10)
            assert texture_distance(blocky, hr, 2) > 1.15 * texture_distance(clean, hr, 2), (name, label)


def test_lightly_blurred_hr_beats_bicubic_and_more_blur_scores_worse(scenes):
    for name, (hr, bic) in scenes.items():
        scores = [texture_distance(_blur(hr, s), hr, 2) for s in (0.5, 1.0, 2.0)]
        assert scores == sorted(scores), (name, scores)
        assert scores[0] < 0.75 * texture_distance(bic, hr, 2), name


def test_texture_distance_on_grey_flat_and_small_images(hr):
    grey = hr.mean(axis=2, keepdims=True)
    assert texture_distance(_blur(grey, 1.0), grey) > texture_distance(_blur(grey, 0.5), grey) > 0
    flat = np.full((64, 64, 3), 0.5, np.float32)
    dotted = flat.copy()
    dotted[::8, ::8] = 1.0
    assert texture_distance(flat, flat) == 0.0
    assert 0 < texture_distance(dotted, flat) < float("inf")  # detail a flat reference lacks: finite
    assert texture_distance(hr[:12, :12], _blur(hr, 1.0)[:12, :12]) > 0  # one octave only
    with pytest.raises(ValueError, match="shape mismatch"):
        texture_distance(hr[:-2], hr)
    with pytest.raises(ValueError, match="too small"):
        texture_distance(hr[:10, :10], hr[:10, :10], border=2)


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
