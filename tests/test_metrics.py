"""gensr.metrics: the SR literature's protocol, checked against published figures and scikit-image."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gensr.data.ops import modcrop
from gensr.data.resize import bicubic_upscale
from gensr.metrics import psnr, psnr_rgb, psnr_y, quantise, shave, ssim, ssim_y, y_channel

# Published bicubic rows (PSNR dB / SSIM, Y channel) as reprinted in SRCNN/VDSR-era tables.
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
}


def _bicubic_scores(benchmarks, name: str, scale: int) -> tuple[float, float]:
    """Mean PSNR-Y/SSIM-Y of the project's bicubic baseline (`bicubic_upscale`, the one training,
    evaluate, export and bench use) on the standard LR_bicubic files."""
    psnrs, ssims = [], []
    hr_files = sorted((benchmarks / name / "HR").glob("*.png"))
    assert hr_files, f"no HR images in {benchmarks / name / 'HR'}"
    for hr_path in hr_files:
        hr = modcrop(np.asarray(Image.open(hr_path).convert("RGB")), scale)
        lr = Image.open(benchmarks / name / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png")
        sr = bicubic_upscale(np.asarray(lr.convert("RGB")), scale)
        assert sr.dtype == np.uint8 and sr.shape == hr.shape
        psnrs.append(psnr_y(sr, hr, border=scale))
        ssims.append(ssim_y(sr, hr, border=scale))
    return float(np.mean(psnrs)), float(np.mean(ssims))


@pytest.mark.parametrize(("name", "scale"), sorted(PUBLISHED_BICUBIC))
def test_bicubic_reproduces_published_rows(benchmarks_dir, name, scale):
    want_psnr, want_ssim = PUBLISHED_BICUBIC[(name, scale)]
    got_psnr, got_ssim = _bicubic_scores(benchmarks_dir, name, scale)
    assert abs(got_psnr - want_psnr) <= 0.1, f"{name} x{scale}: {got_psnr:.3f} dB vs published {want_psnr}"
    # MATLAB's SSIM differs in small details (filtering of the borders); 0.003 is well below
    # the gap between any two methods in those tables.
    assert abs(got_ssim - want_ssim) <= 0.003, f"{name} x{scale}: SSIM {got_ssim:.4f} vs {want_ssim}"


def _photo_pair(seed: int = 0, shape=(61, 83, 3)) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 'photo' and a noisy, blurred version of it (uint8), deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = np.stack(
        [np.sin(xx / 5.0 + c) * np.cos(yy / 7.0 - c) * 90 + 128 + 20 * c for c in range(shape[2])], axis=2
    )
    base += rng.normal(0, 8, size=shape)
    hr = np.clip(np.round(base), 0, 255).astype(np.uint8)
    sr = np.clip(np.round(base * 0.95 + 6 + rng.normal(0, 6, size=shape)), 0, 255).astype(np.uint8)
    return sr, hr


@pytest.mark.parametrize("border", [0, 2, 4])
def test_psnr_and_ssim_match_scikit_image_on_y(border):
    sr, hr = _photo_pair()
    sr_y, hr_y = shave(y_channel(sr), border), shave(y_channel(hr), border)
    assert psnr_y(sr, hr, border) == pytest.approx(
        peak_signal_noise_ratio(hr_y, sr_y, data_range=255), abs=1e-9
    )
    ref_ssim = structural_similarity(
        hr_y, sr_y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim_y(sr, hr, border) == pytest.approx(ref_ssim, abs=1e-6)


def test_rgb_psnr_matches_scikit_image_and_float_equals_uint8():
    sr, hr = _photo_pair(seed=3)
    ref = peak_signal_noise_ratio(hr.astype(np.float64), sr.astype(np.float64), data_range=255)
    assert psnr_rgb(sr, hr) == pytest.approx(ref, abs=1e-9)
    # A float image in [0, 1] is quantised to the same 8-bit grid as the saved PNG would be.
    assert psnr_y(sr / 255.0, hr / 255.0, 2) == pytest.approx(psnr_y(sr, hr, 2), abs=1e-9)


def test_y_channel_is_bt601_studio_range_and_grey_is_its_own_luma():
    white = np.full((4, 4, 3), 255, np.uint8)
    black = np.zeros((4, 4, 3), np.uint8)
    assert y_channel(white) == pytest.approx(np.full((4, 4), 235.0), abs=1e-3)
    assert y_channel(black) == pytest.approx(np.full((4, 4), 16.0))
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    assert np.array_equal(y_channel(grey), grey[:, :, 0].astype(np.float64))


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    _, hr = _photo_pair()
    assert psnr_y(hr, hr, 2) == float("inf")
    assert ssim_y(hr, hr, 2) == pytest.approx(1.0)


def test_psnr_known_value():
    a = np.zeros((8, 8))
    b = np.full((8, 8), 255.0 / 10)  # MSE = 25.5^2 -> 20 dB below peak^2
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(quantise(np.zeros((2, 2))), quantise(np.ones((2, 2)))) == pytest.approx(0.0)


def test_mismatched_shapes_and_tiny_images_are_refused():
    sr, hr = _photo_pair()
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr_y(sr[:-1], hr)
    with pytest.raises(ValueError, match="too small"):
        ssim(np.zeros((8, 40)), np.zeros((8, 40)))

