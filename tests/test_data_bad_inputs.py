"""Bad photos: each is skipped (warned, counted in the manifests) or fails, naming the file."""
import io
import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from data_photos import hr_of, manifests, photo_array, run, write_photos
from PIL import Image

from gensr.io import BadImageError


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# name -> (file name, bytes maker, extra data config, counter key in the manifests)
BAD = {
    "truncated_png": ("cut.png", lambda: _png_bytes(photo_array(seed=99))[:900], {}, "corrupt or truncated"),
    "truncated_jpeg": ("cut.jpg", lambda: _jpeg_bytes(photo_array(seed=98))[:700], {}, "corrupt or truncated"),
    "zero_byte": ("empty.png", lambda: b"", {}, "zero-byte file"),
    "not_an_image": ("notes.jpg", lambda: b"these are my holiday notes, not a photo\n" * 20, {}, "not an image"),
    "too_small": ("tiny.png", lambda: _png_bytes(photo_array(12, 40, seed=97)), {}, "too small"),
    "bomb": ("huge.png", lambda: _png_bytes(photo_array(120, 120, seed=96)), {"max_pixels": 5000}, "too many pixels"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_photo_is_skipped_with_a_warning(tmp_path, case, caplog):
    name, make, extra, kind = BAD[case]
    folder = tmp_path / "photos"
    write_photos(folder, 4)
    (folder / name).write_bytes(make())
    with caplog.at_level(logging.WARNING, logger="gensr.prepare"):
        summary = run(folder, tmp_path / "out", **extra)
    assert summary["skipped"] == 1 and sum(summary["counts"].values()) == 4
    assert any(name in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for m in manifests(tmp_path / "out").values():  # run-wide block, in every split's manifest
        assert m["skipped"]["count"] == 1 and m["skipped"]["by_reason"] == {kind: 1}
        assert m["skipped"]["files"][0]["source"] == name
    assert not list((tmp_path / "out").rglob(f"{Path(name).stem}.png"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_photo_fails_naming_the_file(tmp_path, case):
    name, make, extra, _ = BAD[case]
    folder = tmp_path / "photos"
    write_photos(folder, 3)
    (folder / name).write_bytes(make())
    with pytest.raises(BadImageError, match=name) as err:
        run(folder, tmp_path / "out", on_bad_image="fail", **extra)
    assert str(folder / name) in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing published by a failed run


def test_missing_and_empty_folders_are_always_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no photos here")
    with pytest.raises(FileNotFoundError, match="holds no images"):
        run(tmp_path / "empty", tmp_path / "out", on_bad_image="skip")


def test_only_bad_photos_is_an_error(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="no usable training image"):
        run(folder, tmp_path / "out", split={"val_fraction": 0, "test_fraction": 0})


def test_duplicates_are_removed_before_a_seeded_split(tmp_path, caplog):
    folder = tmp_path / "photos"
    photos = write_photos(folder, 4)
    (folder / "sub").mkdir()
    shutil.copy(photos[0], folder / "sub" / "copy.png")
    with caplog.at_level(logging.WARNING):
        run(folder, tmp_path / "out")
    skipped = manifests(tmp_path / "out")["train"]["skipped"]
    assert skipped["by_reason"] == {"duplicate": 1}
    kept, dropped = sorted(["p0.png", "sub/copy.png"])[0], sorted(["p0.png", "sub/copy.png"])[1]
    assert skipped["files"][0]["source"] == dropped and kept in skipped["files"][0]["reason"]


def test_duplicates_across_explicit_splits(tmp_path):
    folder = tmp_path / "photos"
    photos = write_photos(folder, 3)
    shutil.copy(photos[0], folder / "again.png")
    lists = {"train": ["p0", "p1"], "val": ["p2.png"], "test": ["again"]}
    run(folder, tmp_path / "out", split={"lists": lists})
    m = manifests(tmp_path / "out")
    assert m["test"]["counts"] == {"train": 2, "val": 1, "test": 0}
    (entry,) = m["test"]["skipped"]["files"]
    assert entry["source"] == "again.png" and entry["split"] == "test"
    assert "across splits" in entry["reason"] and "p0.png" in entry["reason"]
    with pytest.raises(BadImageError, match="across splits"):
        run(folder, tmp_path / "out2", split={"lists": lists}, on_bad_image="fail")


def _png16_rgb(path: Path, arr: np.ndarray) -> None:
    """A 48-bit RGB PNG (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_modes_bit_depths_and_orientation_are_converted(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rgb = photo_array(32, 48, seed=5)
    rgba = np.dstack([rgb, np.full((32, 48), 255, np.uint8)])
    rgba[:8, :8, 3] = 0  # transparent corner
    Image.fromarray(rgba).save(folder / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(rgb).convert("L").save(folder / "grey.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    grey16 = (np.arange(32 * 48).reshape(32, 48) * 40 + 7).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "grey16.png")
    rgb16 = (photo_array(32, 48, seed=6).astype(np.uint16) * 257 + 100).astype(np.uint16)
    _png16_rgb(folder / "rgb16.png", rgb16)
    marked = rgb.copy()
    marked[:10, :10] = (255, 0, 0)  # red top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(marked).save(folder / "rotated.jpg", quality=95, exif=exif.tobytes())

    summary = run(folder, tmp_path / "out", split={"val_fraction": 0, "test_fraction": 0})
    assert summary["skipped"] == 0
    out = tmp_path / "out"
    for source in ("rgba.png", "palette.png", "grey.png", "cmyk.jpg", "grey16.png", "rgb16.png"):
        assert hr_of(out, source).shape == (32, 48, 3)
    assert (hr_of(out, "rgba.png")[:8, :8] == 255).all()  # alpha composited onto white
    np.testing.assert_array_equal(hr_of(out, "rgba.png")[8:], rgb[8:])
    np.testing.assert_array_equal(hr_of(out, "palette.png"), np.asarray(Image.open(folder / "palette.png").convert("RGB")))
    grey = hr_of(out, "grey.png")
    assert (grey[..., 0] == grey[..., 2]).all()
    assert np.abs(hr_of(out, "cmyk.jpg").astype(int) - rgb).mean() < 8  # CMYK -> RGB
    # 16-bit grey keeps its precision until the 8-bit HR is written: round(v / 65535 * 255).
    np.testing.assert_array_equal(hr_of(out, "grey16.png")[..., 1], np.round(grey16 / 65535 * 255).astype(np.uint8))
    # 48-bit RGB: Pillow decodes it to 8 bits per channel by keeping the high byte.
    np.testing.assert_array_equal(hr_of(out, "rgb16.png"), (rgb16 >> 8).astype(np.uint8))
    rot = hr_of(out, "rotated.jpg")
    assert rot.shape == (48, 32, 3)  # EXIF orientation applied: portrait
    assert rot[:8, -8:, 0].mean() > 200 and rot[:8, -8:, 1].mean() < 60  # red moved to top-right
