"""What prepare does with the photos it finds and goes on: a bad photo is skipped (warned, listed in
the manifests), duplicates are dropped before the split, every image mode reaches the pairs converted.
(Refusals, with data.on_bad_image=fail or bad settings: test_data_bad_inputs.py.)"""
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_photos import BAD, hr_of, manifests, photo_array, run, write_photos
from PIL import Image

from gensr.io import BadImageError, to_float, to_uint8


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


def test_duplicates_across_explicit_splits_are_skipped_and_reported(tmp_path):
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


def test_modes_and_orientation_reach_the_pairs_converted(tmp_path):
    """The shared reader's conversions (tests/test_io_modes.py) end up in the HR pairs."""
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
    marked = rgb.copy()
    marked[:10, :10] = (255, 0, 0)  # red top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(marked).save(folder / "rotated.jpg", quality=95, exif=exif.tobytes())

    summary = run(folder, tmp_path / "out", split={"val_fraction": 0, "test_fraction": 0})
    assert summary["skipped"] == 0
    out = tmp_path / "out"
    for source in ("rgba.png", "palette.png", "grey.png", "cmyk.jpg", "grey16.png"):
        assert hr_of(out, source).shape == (32, 48, 3)
    assert (hr_of(out, "rgba.png")[:8, :8] == 255).all()  # alpha composited onto white
    np.testing.assert_array_equal(hr_of(out, "rgba.png")[8:], rgb[8:])
    np.testing.assert_array_equal(hr_of(out, "palette.png"), np.asarray(Image.open(folder / "palette.png").convert("RGB")))
    grey = hr_of(out, "grey.png")
    assert (grey[..., 0] == grey[..., 2]).all()
    assert np.abs(hr_of(out, "cmyk.jpg").astype(int) - rgb).mean() < 8  # CMYK -> RGB
    # 16-bit grey keeps its precision until the 8-bit HR is written.
    np.testing.assert_array_equal(hr_of(out, "grey16.png")[..., 1], to_uint8(to_float(grey16)))
    rot = hr_of(out, "rotated.jpg")
    assert rot.shape == (48, 32, 3)  # EXIF orientation applied: portrait
    assert rot[:8, -8:, 0].mean() > 200 and rot[:8, -8:, 1].mean() < 60  # red moved to top-right
