"""Degradations: MATLAB bicubic against the benchmark files, the realistic chain, its primitives,
and the bicubic baseline (the upscale every SR table compares with)."""
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

from gensr.config import compose
from gensr.data import ops
from gensr.data.degradations import BicubicDegradation, RealisticDegradation, image_rng
from gensr.data.ops import modcrop
from gensr.data.resize import METHODS, bicubic_upscale, imresize, resize_matrix
from gensr.io import read_image, to_float, to_uint8
from gensr.metrics import psnr, psnr_y

ROOT = Path(__file__).resolve().parents[1]
SHA = "ab" * 32


def photo(h=96, w=128, c=3, seed=0) -> np.ndarray:
    """A smooth random 'photo' with some edges, uint8."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8 + 1, w // 8 + 1, c))
    img = imresize(small, size=(h, w), method="bicubic")
    img[h // 3 : h // 2, w // 4 : w // 2] = 0.9  # a sharp-edged block
    return to_uint8(np.clip(img, 0, 1))


def test_matlab_bicubic_matches_benchmark_lr_files(benchmarks_dir):
    gaps, worst, n = [], 0, 0
    for scale in (2, 3, 4):
        deg = BicubicDegradation(scale=scale)
        for dataset in ("Set5", "Set14"):
            for hr_path in sorted((benchmarks_dir / dataset / "HR").glob("*.png")):
                hr = to_uint8(modcrop(read_image(hr_path), scale))
                ref_path = benchmarks_dir / dataset / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
                ref = np.asarray(Image.open(ref_path).convert("RGB"))
                lr, params = deg(hr, image_rng(0, SHA))
                assert lr.shape == ref.shape and lr.dtype == np.uint8
                assert params == {"kind": "bicubic", "scale": scale, "method": "matlab_imresize_bicubic"}
                diff = np.abs(lr.astype(int) - ref.astype(int))
                worst, n = max(worst, int(diff.max())), n + 1
                assert (diff > 0).mean() < 1e-3, f"{ref_path.name}: {(diff > 0).mean():.2%} pixels differ"

                def up(a):  # PIL bicubic back to HR size, as the benchmark README does
                    return np.asarray(Image.fromarray(a).resize(hr.shape[1::-1], Image.BICUBIC))

                gaps.append(psnr_y(up(lr), hr, scale) - psnr_y(up(ref), hr, scale))
    print(f"\n{n} LR images: max |ours - file| = {worst} grey levels; max PSNR-Y gap {max(map(abs, gaps)):.4f} dB")
    assert n == 57
    assert worst <= 1
    assert max(abs(g) for g in gaps) < 0.1


def test_resize_matrix_is_matlab_like():
    m = resize_matrix(10, 5, "bicubic")
    np.testing.assert_allclose(np.asarray(m.sum(axis=1)).ravel(), 1.0)
    for method in METHODS:
        out = imresize(np.full((9, 7, 3), 0.25), size=(4, 11), method=method)
        assert out.shape == (4, 11, 3)
        np.testing.assert_allclose(out, 0.25)  # weights sum to 1, mirrored borders: flat stays flat
    assert imresize(np.zeros((10, 15)), scale=1 / 3).shape == (4, 5)  # MATLAB: ceil(scale * size)
    assert imresize(np.zeros((8, 8, 1), np.uint8), scale=0.5).dtype == np.uint8
    with pytest.raises(ValueError, match="unknown resize method"):
        resize_matrix(4, 2, "spline")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_shapes_and_determinism(scale, channels):
    hr = modcrop(photo(c=channels), scale)
    deg = BicubicDegradation(scale=scale)
    lr, params = deg(hr, image_rng(0, SHA))
    assert lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, channels) and lr.dtype == np.uint8
    assert params["scale"] == scale
    assert lr.tobytes() == deg(hr, image_rng(1, SHA))[0].tobytes()  # nothing random
    with pytest.raises(ValueError, match="modcropped"):
        deg(photo(h=97, c=channels), image_rng(0, SHA))
    with pytest.raises(ValueError, match="2, 3 or 4"):
        BicubicDegradation(scale=5)


@pytest.fixture(scope="module")
def realistic_conf() -> dict:
    from omegaconf import OmegaConf

    cfg = compose(["degradation=realistic"], root=ROOT).degradation
    return OmegaConf.to_container(cfg, resolve=True)


def _check_ranges(rec: dict, conf: dict) -> None:
    for i, step in enumerate(rec["passes"]):
        c = conf["first" if i == 0 else "second"]
        b = step["blur"]
        if b["applied"]:
            lo, hi = c["blur"]["kernel_size"]
            assert lo <= b["kernel_size"] <= hi and b["kernel_size"] % 2 == 1
            for s in ("sigma_x", "sigma_y"):
                assert c["blur"]["sigma"][0] <= b[s] <= c["blur"]["sigma"][1]
        r = step["resize"]
        assert r["method"] in c["resize"]["methods"]
        if r["direction"] != "keep":
            lo, hi = c["resize"][r["direction"]]
            assert lo <= r["factor"] <= hi
        nz = step["noise"]
        if nz["applied"]:
            key, val = ("gaussian_sigma", nz["sigma"]) if nz["type"] == "gaussian" else ("poisson_scale", nz["scale"])
            assert c["noise"][key][0] <= val <= c["noise"][key][1]
        if step["jpeg"]["applied"]:
            assert c["jpeg"]["quality"][0] <= step["jpeg"]["quality"] <= c["jpeg"]["quality"][1]
    assert rec["final"]["method"] in conf["final"]["methods"]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_realistic_chain(realistic_conf, scale, channels):
    deg = instantiate({**realistic_conf, "scale": scale}, _convert_="all")
    assert isinstance(deg, RealisticDegradation)
    hr = modcrop(photo(c=channels, seed=scale), scale)
    seen_passes = set()
    for k in range(6):
        identity = f"{k:064x}"
        lr, rec = deg(hr, image_rng(7, identity))
        assert lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, channels) and lr.dtype == np.uint8
        assert rec["kind"] == "realistic" and rec["scale"] == scale
        assert rec["final"]["size"] == list(lr.shape[:2])
        _check_ranges(rec, realistic_conf)
        seen_passes.add(len(rec["passes"]))
        again, rec2 = deg(hr, image_rng(7, identity))
        assert again.tobytes() == lr.tobytes() and rec2 == rec  # same seed + photo: byte-identical
    assert seen_passes == {2}  # second_order_prob = 1.0 in the shipped config
    other, _ = deg(hr, image_rng(8, f"{0:064x}"))
    assert other.tobytes() != deg(hr, image_rng(7, f"{0:064x}"))[0].tobytes()


def test_realistic_once_or_twice(realistic_conf):
    hr = photo()
    for prob, expected in ((0.0, {1}), (0.5, {1, 2})):
        deg = instantiate({**realistic_conf, "scale": 2, "second_order_prob": prob}, _convert_="all")
        counts = {len(deg(hr, image_rng(0, f"{k:064x}"))[1]["passes"]) for k in range(12)}
        assert counts == expected


def test_realistic_config_is_validated(realistic_conf):
    kwargs = {k: v for k, v in realistic_conf.items() if k != "_target_"}
    first = {**kwargs["first"], "blur": {**kwargs["first"]["blur"], "kernel_size": [6, 21]}}
    with pytest.raises(ValueError, match="odd"):
        RealisticDegradation(**{**kwargs, "first": first})
    resize = {**kwargs["second"]["resize"], "probs": {"up": 0.5, "down": 0.5, "keep": 0.5}}
    with pytest.raises(ValueError, match="sum to 1"):
        RealisticDegradation(**{**kwargs, "second": {**kwargs["second"], "resize": resize}})
    with pytest.raises(ValueError, match="kind"):
        RealisticDegradation(**{**kwargs, "kind": "bicubic"})


def test_blur_kernels_and_filtering():
    iso = ops.gaussian_kernel(11, 1.5, 1.5, 0.0)
    assert iso.shape == (11, 11) and iso.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(iso, iso.T)
    aniso = ops.gaussian_kernel(15, 3.0, 0.5, np.pi / 2)  # long axis rotated onto y
    assert aniso[:, 7].sum() > aniso[7, :].sum()
    with pytest.raises(ValueError, match="odd"):
        ops.gaussian_kernel(10, 1, 1, 0)
    img = photo().astype(np.float64) / 255
    # The separable (isotropic) and FFT (anisotropic) paths agree on an isotropic kernel.
    np.testing.assert_allclose(ops.blur(img, iso, True), ops.blur(img, iso, False), atol=1e-9)
    flat = np.full((40, 50, 3), 0.6)
    np.testing.assert_allclose(ops.blur(flat, aniso, False), 0.6, atol=1e-9)  # no dark border


def test_noise_and_jpeg():
    grey = np.full((200, 200, 3), 0.5)
    g = ops.gaussian_noise(grey, 10.0, False, np.random.default_rng(0))
    assert np.std(g - grey) * 255 == pytest.approx(10.0, rel=0.05)
    assert not np.allclose(g[..., 0], g[..., 1])
    gg = ops.gaussian_noise(grey, 10.0, True, np.random.default_rng(0))
    np.testing.assert_array_equal(gg[..., 0], gg[..., 2])  # grey noise: same in every channel
    p = ops.poisson_noise(grey, 1.0, False, np.random.default_rng(0))
    assert abs(np.mean(p - grey)) < 2e-3 and np.std(p - grey) * 255 == pytest.approx(np.sqrt(127.5), rel=0.05)
    pg = ops.poisson_noise(grey, 1.0, True, np.random.default_rng(0))
    np.testing.assert_allclose(pg[..., 0] - grey[..., 0], pg[..., 1] - grey[..., 1])
    img = photo().astype(np.float64) / 255
    hi, lo = ops.jpeg(img, 95), ops.jpeg(img, 20)
    assert hi.shape == img.shape and 0 <= lo.min() and lo.max() <= 1
    assert psnr(hi, img, 1.0) > psnr(lo, img, 1.0) > 20
    assert ops.jpeg(img[:, :, :1], 50).shape == (96, 128, 1)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_modcrop_keeps_top_left_multiple_of_scale(scale):
    img = np.arange(13 * 17 * 3).reshape(13, 17, 3)
    out = modcrop(img, scale)
    assert out.shape[0] % scale == 0 and out.shape[1] % scale == 0
    assert out.shape[0] > 13 - scale and out.shape[1] > 17 - scale
    assert np.array_equal(out, img[: out.shape[0], : out.shape[1]])


@pytest.mark.parametrize("channels", [1, 3])
def test_bicubic_baseline_is_matlab_imresize_of_the_8_bit_lr(channels):
    """uint8 in -> uint8 out, float in -> the same pixels as float; = MATLAB imresize on doubles
    (im2double of the LR), rounded once, not Pillow's bicubic (which differs in many pixels)."""
    lr = photo(24, 30, c=channels, seed=3)
    up = bicubic_upscale(lr, 3)
    assert up.dtype == np.uint8 and up.shape == (72, 90, channels)
    want = to_uint8(np.clip(imresize(lr.astype(np.float64) / 255.0, scale=3, method="bicubic"), 0, 1))
    np.testing.assert_array_equal(up, want)
    as_float = bicubic_upscale(to_float(lr), 3)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(to_uint8(as_float), up)
    if channels == 3:
        pil = np.asarray(Image.fromarray(lr).resize((90, 72), Image.BICUBIC))
        assert np.mean(pil != up) > 0.05
