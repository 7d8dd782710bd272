"""The one image reader over every mode Pillow opens: each file is built with Pillow/numpy/tifffile
and read back, against a conversion computed here independently (no black, no wrap-around, no
8-bit truncation of 16-bit or float data), or refused naming the file."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from gensr.image_modes import ImageWarning, decode_image
from gensr.io import BadImageError, read_image

H, W = 12, 16
RNG = np.random.default_rng(10)
U8 = RNG.integers(0, 256, (H, W, 4)).astype(np.uint8)
# 16-bit samples with distinct low bytes everywhere: a high-byte-only read is off by up to 255/65535.
U16 = (np.arange(H * W * 4).reshape(H, W, 4) * 337 + 11) % 65536
U16 = U16.astype(np.uint16)
ORIENT_CW = 6  # EXIF "rotate 90 degrees clockwise to display"


def write_png16(path: Path, arr: np.ndarray, exif: bytes | None = None) -> Path:
    """A 16-bit grey / grey+alpha / RGB / RGBA PNG (Pillow writes only 16-bit grey)."""
    h, w = arr.shape[:2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[1 if arr.ndim == 2 else arr.shape[2]]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
    extra = chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")) if exif else b""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _exif_cw() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = ORIENT_CW
    return exif.tobytes()


def _palette() -> tuple[np.ndarray, np.ndarray]:
    colours = RNG.integers(0, 256, (16, 3)).astype(np.uint8)
    return colours, (U8[:, :, 0] % 16).astype(np.uint8)


def _p(d: Path, transparent: bool):
    colours, idx = _palette()
    im = Image.fromarray(idx, "L").convert("P")
    im.putpalette(colours.ravel().tolist())
    kwargs = {"transparency": 3} if transparent else {}
    im.save(d / "p.png", **kwargs)
    return d / "p.png", colours[idx] / 255, (idx != 3).astype(float) if transparent else None


def _pa(d: Path):
    colours, idx = _palette()
    im = Image.frombytes("PA", (W, H), np.dstack([idx, U8[:, :, 1]]).tobytes())
    im.putpalette(colours.ravel().tolist())
    im.save(d / "pa.tif")
    return d / "pa.tif", colours[idx] / 255, U8[:, :, 1] / 255


def _cmyk(d: Path):
    Image.fromarray(U8, "CMYK").save(d / "cmyk.tif")
    c, k = U8[:, :, :3] / 255, U8[:, :, 3:] / 255
    return d / "cmyk.tif", (1 - c) * (1 - k), None


def _ycbcr(d: Path):
    Image.fromarray(U8[:, :, :3], "YCbCr").save(d / "ycc.tif")
    y, cb, cr = (U8[:, :, i].astype(float) for i in range(3))
    rgb = np.dstack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)])
    return d / "ycc.tif", np.clip(rgb, 0, 255) / 255, None


def _rgb_key(d: Path):
    rgb = U8[:, :, :3] // 64 * 64  # few colours, so the key colour occurs
    Image.fromarray(rgb).save(d / "key.png", transparency=(64, 0, 128))
    return d / "key.png", rgb / 255, (~np.all(rgb == (64, 0, 128), axis=2)).astype(float)


def _tiff16(d: Path, **kwargs):
    tifffile.imwrite(d / "rgb16.tif", U16[:, :, :3], photometric="rgb", **kwargs)
    return d / "rgb16.tif", U16[:, :, :3] / 65535, None


def _float(d: Path, values: np.ndarray):
    tifffile.imwrite(d / "f.tif", values.astype(np.float32))
    return d / "f.tif", np.clip(values, 0, 1)[:, :, None], None


def _int32(d: Path):
    tifffile.imwrite(d / "i32.tif", U16[:, :, 0].astype(np.int32))
    return d / "i32.tif", U16[:, :, :1] / 65535, None


def _grey16_big_endian(d: Path):
    Image.frombytes("I;16B", (W, H), U16[:, :, 0].astype(">u2").tobytes()).save(d / "g16b.tif")
    assert Image.open(d / "g16b.tif").mode == "I;16B"
    return d / "g16b.tif", U16[:, :, :1] / 65535, None


def _saved(d: Path, name: str, arr: np.ndarray, mode: str | None = None, scale: float = 255, **kwargs):
    Image.fromarray(arr, mode).save(d / name, **kwargs)
    colour = arr[:, :, :-1] if mode in ("LA", "RGBA") else arr
    alpha = arr[:, :, -1] / 255 if mode in ("LA", "RGBA") else None
    return d / name, (colour if colour.ndim == 3 else colour[:, :, None]) / scale, alpha


RAMP = np.linspace(0.0, 1.0, H * W).reshape(H, W)
CASES = {
    "1": lambda d: _saved(d, "bw.png", U8[:, :, 0] > 127, scale=1),
    "L": lambda d: _saved(d, "l.png", U8[:, :, 0]),
    "LA": lambda d: _saved(d, "la.png", U8[:, :, :2], "LA"),
    "P": lambda d: _p(d, transparent=False),
    "P transparency": lambda d: _p(d, transparent=True),
    "PA": _pa,
    "RGB": lambda d: _saved(d, "rgb.png", U8[:, :, :3]),
    "RGBA": lambda d: _saved(d, "rgba.png", U8, "RGBA"),
    "RGB colour key": _rgb_key,
    "CMYK": _cmyk,
    "YCbCr": _ycbcr,
    "I;16 png": lambda d: _saved(d, "g16.png", U16[:, :, 0], scale=65535),
    "I;16B tiff": lambda d: _grey16_big_endian(d),
    "I (32-bit int)": _int32,
    "RGB 16-bit png": lambda d: (write_png16(d / "c16.png", U16[:, :, :3]), U16[:, :, :3] / 65535, None),
    "RGBA 16-bit png": lambda d: (write_png16(d / "c16a.png", U16), U16[:, :, :3] / 65535, U16[:, :, 3] / 65535),
    "LA 16-bit png": lambda d: (write_png16(d / "g16a.png", U16[:, :, :2]), U16[:, :, :1] / 65535, U16[:, :, 1] / 65535),
    "RGB 16-bit tiff little-endian": _tiff16,
    "RGB 16-bit tiff big-endian": lambda d: _tiff16(d, byteorder=">"),
    "RGB 16-bit tiff deflate (libtiff)": lambda d: _tiff16(d, compression="zlib"),
    "F in [0, 1]": lambda d: _float(d, RAMP),
    "F small overshoot clipped": lambda d: _float(d, RAMP * 1.04 - 0.02),
}


@pytest.mark.parametrize("case", list(CASES))
def test_mode_is_converted_like_the_independent_expectation(case, tmp_path):
    path, colour, alpha = CASES[case](tmp_path)
    pic = decode_image(path)
    assert pic.colour.dtype == np.float32 and pic.colour.shape == colour.shape
    # 8-bit sources: Pillow's conversions round within one level; 16-bit and float: exact.
    tol = 2 / 65535 if path.suffix in (".tif", ".png") and "16" in case or case.startswith(("I", "F")) else 1.01 / 255
    np.testing.assert_allclose(pic.colour, colour, atol=tol, rtol=0)
    if alpha is None:
        assert pic.alpha is None
    else:
        np.testing.assert_allclose(pic.alpha, alpha, atol=tol, rtol=0)
    # read_image (prepare, evaluate): alpha onto white, grey replicated to RGB, or luma.
    rgb = read_image(path)
    flat = colour if alpha is None else colour * alpha[:, :, None] + 1 - alpha[:, :, None]
    np.testing.assert_allclose(rgb, np.broadcast_to(flat, (H, W, 3)), atol=tol + 1e-6, rtol=0)
    assert read_image(path, channels=1).shape == (H, W, 1)


def test_16bit_ramp_keeps_full_precision(tmp_path):
    ramp = np.round(np.linspace(0, 65535, H * W * 3)).astype(np.uint16).reshape(H, W, 3)
    got = read_image(write_png16(tmp_path / "ramp.png", ramp))
    truth = ramp / 65535
    assert np.abs(got - truth).max() < 2 / 65535
    assert np.abs((ramp >> 8) / 255 - truth).max() > 100 / 65535  # what Pillow alone would give


def test_exif_orientation_applied_to_8_and_16_bit(tmp_path):
    Image.fromarray(U8[:, :, :3]).save(tmp_path / "o8.png", exif=_exif_cw())
    write_png16(tmp_path / "o16.png", U16[:, :, :3], exif=_exif_cw())
    np.testing.assert_allclose(read_image(tmp_path / "o8.png"), np.rot90(U8[:, :, :3], -1) / 255, atol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "o16.png"), np.rot90(U16[:, :, :3], -1) / 65535, atol=1e-6)


def test_multi_frame_gives_the_first_frame_with_a_warning(tmp_path):
    frames = [Image.fromarray(np.full((H, W, 3), v, np.uint8)) for v in (40, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(ImageWarning, match=r"anim\.gif: 2 frames .*using the first"):
        img = read_image(tmp_path / "anim.gif")
    np.testing.assert_allclose(img, 40 / 255, atol=1e-6)


REFUSED = {
    "LAB": (lambda d: Image.new("LAB", (W, H)).save(d / "x.tif"), "unsupported image mode 'LAB'"),
    "F in 0..255": (lambda d: tifffile.imwrite(d / "x.tif", (RAMP * 255).astype(np.float32)), "looks like 0..255 data"),
    "F in 0..65535": (lambda d: tifffile.imwrite(d / "x.tif", (RAMP * 65535).astype(np.float32)), "looks like 0..65535"),
    "F with NaN": (lambda d: tifffile.imwrite(d / "x.tif", np.where(RAMP > 0.5, np.nan, RAMP).astype(np.float32)),
                   "NaN or infinite"),
    "I above 16 bits": (lambda d: tifffile.imwrite(d / "x.tif", (RAMP * 100000).astype(np.int32)), "0..65535"),
    "I negative": (lambda d: tifffile.imwrite(d / "x.tif", (RAMP * 100 - 50).astype(np.int16)), "0..65535"),
    "float64 tiff": (lambda d: tifffile.imwrite(d / "x.tif", RAMP), "not an image Pillow can read"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unconvertible_modes_are_refused_by_name(case, tmp_path):
    make, reason = REFUSED[case]
    make(tmp_path)
    with pytest.raises(BadImageError, match=reason) as info:
        read_image(tmp_path / "x.tif")
    assert info.value.path == str(tmp_path / "x.tif")
