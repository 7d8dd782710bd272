"""bench/texture_bound.py: the phase-randomising oracle keeps each window's detail spectrum and power."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_texture_bound", ROOT / "bench" / "texture_bound.py")
texture_bound = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(texture_bound)


@pytest.mark.parametrize("window", [8, 16])
def test_windows_reconstruct_exactly_when_the_phase_is_kept(window):
    x = np.random.default_rng(0).standard_normal((37, 53, 3))  # sizes no window divides
    np.testing.assert_allclose(texture_bound.randomise_phase(x, window, None), x, atol=1e-12)


def test_a_random_phase_keeps_the_power_and_the_band_but_not_the_pixels():
    rng = np.random.default_rng(1)
    # A vertical sine of period 4 px in every channel: energy at one frequency, in one direction.
    x = np.sin(np.arange(96) * np.pi / 2)[None, :, None] * np.ones((96, 1, 3))
    y = texture_bound.randomise_phase(x, 16, rng)
    assert np.isrealobj(y) and y.shape == x.shape
    assert abs(y.std() / x.std() - 1) < 0.15  # in expectation 1; windows add in power
    assert abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]) < 0.2  # the pixels are not x's
    # Still horizontal detail near period 4: most power along x at |f| in 1/5..1/3 cycles/px.
    power = np.abs(np.fft.fft2(y[:, :, 0])) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(96), np.fft.fftfreq(96), indexing="ij")
    band = (np.abs(fx) > 0.2) & (np.abs(fx) < 1 / 3) & (np.abs(fy) < 0.1)
    assert power[band].sum() > 0.7 * power.sum()
    np.testing.assert_allclose(y[:, :, 0], y[:, :, 2])  # one phase for every channel: colour kept


@pytest.mark.parametrize("window", [0, 4, 2.5])
def test_the_texture_distance_refuses_a_window_with_no_centre(window):
    from gensr.evaluate.texture import texture_distance

    img = np.random.default_rng(2).random((32, 32, 3))
    with pytest.raises(ValueError, match="odd whole number"):
        texture_distance(img, img, 0, window)
