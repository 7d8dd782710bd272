"""Bad photos and bad data settings: each is skipped (warned, listed in the manifests) or refused by
the stage script with one line naming the file or key and exit status 2; the photo folder is never
modified, and a refused run publishes nothing."""
import hashlib
import io
import logging
import os
import runpy
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_photos import ROOT, hr_of, manifests, photo_array, run, write_photos
from PIL import Image

from gensr.config import write_params
from gensr.errors import EXIT_USER_ERROR
from gensr.io import BadImageError, to_float, to_uint8


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


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below `folder` (links not followed): content hash, link target or kind, and the
    folders' mtimes (a file created and deleted again still changes its folder's mtime)."""
    out = {".": ("dir", folder.lstat().st_mtime_ns)} if folder.is_dir() else {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = p.lstat()
            rel = p.relative_to(folder).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_mode)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode), st.st_mtime_ns)
    return out


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


# The refusal matrix. Each case fills `photos` (and may point data.* elsewhere) and returns the
# extra overrides and the texts the one-line message must hold. T = the case's temp folder.
def _bad_photo(case):
    def setup(photos, t, proj):
        name, make, extra, _ = BAD[case]
        (photos / name).write_bytes(make())
        return ["data.on_bad_image=fail", *(f"data.{k}={v}" for k, v in extra.items())], [str(photos / name)]
    return setup


def _entry(make, name):
    def setup(photos, t, proj):
        make(photos, t)
        return ["data.on_bad_image=fail"], [name]
    return setup


def _overlap(folder_at, out_at, clash=None):
    """data.folder and data.out_dir; `clash`: the output folder the message names (default out_dir)."""
    def setup(photos, t, proj):
        folder, out = folder_at(photos, t, proj), out_at(photos, t, proj)
        if folder != photos:
            write_photos(folder, 2)
        named = proj / clash if clash else out
        return [f"data.folder={folder}", f"data.out_dir={out}"], [str(folder), str(named)]
    return setup


def _missing_list(photos, t, proj):
    return [f"data.split.lists={{train: [p0], test: {t / 'held_out.txt'}}}"], [str(t / "held_out.txt")]


def _duplicate_across_splits(photos, t, proj):
    shutil.copy(photos / "p0.png", photos / "again.png")
    lists = "{train: [p0, p1], val: [p2], test: [again]}"
    return [f"data.split.lists={lists}", "data.on_bad_image=fail"], ["again.png", "across splits"]


def _linked(link: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _clash(photos, t, proj):
    (photos / "a").mkdir()
    write_photos(photos / "a", 1, prefix="b")
    write_photos(photos, 1, prefix="a__b")
    return [], ["a/b0.png", "a__b0.png"]


def _only_bad(photos, t, proj):
    for p in photos.iterdir():
        p.write_bytes(b"junk")
    return [], [str(photos), "no usable training image"]


def _no_images(photos, t, proj):
    for p in photos.iterdir():
        p.unlink()
    (photos / "readme.txt").write_text("no photos here")
    return [], [str(photos), "holds no images", "readme.txt"]


def _folder_is_a_file(photos, t, proj):
    (t / "a_file.png").write_bytes(b"x")
    return [f"data.folder={t / 'a_file.png'}"], [f"data.folder {t / 'a_file.png'} is not a folder"]


MATRIX = {
    **{f"fail_{c}": _bad_photo(c) for c in BAD},
    "fail_folder_named_like_an_image": _entry(lambda p, t: write_photos(p / "x.png", 1, prefix="in"), "x.png"),
    "fail_broken_link": _entry(lambda p, t: (p / "link.png").symlink_to(t / "nowhere.png"), "link.png"),
    "fail_link_loop": _entry(lambda p, t: (p / "link.png").symlink_to(p / "link.png"), "link.png"),
    "fail_fifo": _entry(lambda p, t: os.mkfifo(p / "pipe.png"), "pipe.png"),
    "fail_link_to_a_folder": _entry(lambda p, t: (p / "more").symlink_to(p.parent / "elsewhere"), "more"),
    "missing_folder": lambda p, t, r: ([f"data.folder={t / 'no'}"], [f"data.folder {t / 'no'} does not exist"]),
    "folder_is_a_file": _folder_is_a_file,
    "no_images": _no_images,
    "only_bad_photos": _only_bad,
    "split_list_file_missing": _missing_list,
    "split_list_entry_unknown": lambda p, t, proj: (["data.split.lists={train: [p0, p9]}"], ["data.split.lists.train", "'p9'"]),
    "duplicate_across_splits": _duplicate_across_splits,
    "output_names_clash": _clash,
    "out_dir_is_the_folder": _overlap(lambda p, t, r: p, lambda p, t, r: p),
    "out_dir_inside_the_folder": _overlap(lambda p, t, r: p, lambda p, t, r: p / "prepared"),
    "folder_inside_out_dir": _overlap(lambda p, t, r: t / "out" / "train" / "hr", lambda p, t, r: t / "out"),
    "folder_inside_models": _overlap(lambda p, t, r: r / "models" / "photos", lambda p, t, r: t / "out", "models"),
    "folder_is_the_project": _overlap(lambda p, t, r: r, lambda p, t, r: t / "out", "models"),
    "folder_links_into_reports": _overlap(lambda p, t, r: _linked(t / "via_link", r / "reports" / "pics"),
                                          lambda p, t, r: t / "out", "reports"),
}


@pytest.fixture(scope="module")
def stage_main():
    """pipelines/prepare.py's main, run in this process (as DVC runs the script, without the start-up)."""
    return runpy.run_path(str(ROOT / "pipelines" / "prepare.py"), run_name="prepare_stage")["main"]


@pytest.fixture(scope="module")
def project_template(tmp_path_factory) -> Path:
    proj = tmp_path_factory.mktemp("proj")
    shutil.copytree(ROOT / "conf", proj / "conf")
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    write_params([], root=proj)
    return proj


@pytest.fixture
def project(project_template, tmp_path, monkeypatch) -> Path:
    """A gensr project (conf/, dvc.yaml, params.yaml) as the cwd: the stage script's repo root."""
    proj = tmp_path / "proj"
    shutil.copytree(project_template, proj)
    monkeypatch.chdir(proj)
    return proj


def _argv(photos: Path, out: Path, extra: list[str]) -> list[str]:
    return ["data.source=folder", f"data.folder={photos}", f"data.out_dir={out}", "data.min_side=16",
            "data.workers=1", *extra]


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_refused_with_one_line_exit_2_and_the_photos_untouched(case, tmp_path, project, stage_main, capsys):
    photos = tmp_path / "photos"
    write_photos(photos, 4)
    (tmp_path / "elsewhere").mkdir()
    extra, expected = MATRIX[case](photos, tmp_path, project)
    before = snapshot(tmp_path)
    code = stage_main(_argv(photos, tmp_path / "out", extra))
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == EXIT_USER_ERROR and len(errors) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in errors[0], (text, errors[0])
    # Nothing changed but prepare's own staging folder (a photo found bad mid-run, after it began):
    # not the photos, not the project, and nothing was published.
    after = {k: v for k, v in snapshot(tmp_path).items() if k != "." and not k.startswith(".out.partial")}
    assert after == {k: v for k, v in before.items() if k != "."}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_photo_is_refused_by_name(tmp_path, project, stage_main, capsys):
    photos = tmp_path / "photos"
    write_photos(photos, 4)
    (photos / "p1.png").chmod(0)
    assert stage_main(_argv(photos, tmp_path / "out", ["data.on_bad_image=fail"])) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert str(photos / "p1.png") in err and "permission denied" in err


def test_stage_script_process_exits_2_with_one_line(tmp_path, project):
    photos = tmp_path / "photos"
    write_photos(photos, 3)
    (photos / "cut.png").write_bytes(BAD["truncated_png"][1]())
    before = snapshot(photos)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "pipelines" / "prepare.py"),
                           *_argv(photos, tmp_path / "out", ["data.on_bad_image=fail"])],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(photos / "cut.png") in lines[0] and "Traceback" not in proc.stderr
    assert snapshot(photos) == before and not (tmp_path / "out").exists()


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
