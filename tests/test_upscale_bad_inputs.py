"""`gensr upscale` against every kind of mistake: each case checks the exit status, that the
message names the file or option in one line, and that no file outside the output folder changed
(every file is hashed before and after). A bad input is skipped while the good ones are upscaled;
a bad argument or an output that would land on a user's file refuses the run before any writing."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from export_helpers import LocalSR, export_file, smooth_image
from PIL import Image

from gensr.cli import main as cli

GOOD = ("good1.png", "good2.png")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    return export_file(LocalSR(scale=2, channels=3), tmp_path_factory.mktemp("m") / "x2.onnx", "local", 2, 3)


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every entry below `root` except `skip`: file bytes hashed, links by their target."""
    state = {}
    for p in sorted(root.rglob("*")):
        if p == skip or skip in p.parents:
            continue
        rel = str(p.relative_to(root))
        if p.is_symlink():
            state[rel] = "link -> " + os.readlink(p)
        elif p.is_file():
            state[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            state[rel] = "folder"
    return state


def _png(path: Path, h: int = 10, w: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(smooth_image(np.random.default_rng(h * w), h, w)).save(path)
    return path


def _truncated(p: Path) -> None:
    data = _png(p, 30, 30).read_bytes()
    p.write_bytes(data[: len(data) // 2])


# Bad inputs: (make it in the input folder `d`, the input argument(s), the expected message).
# The run goes on: the two good images are upscaled and the exit status is 1.
BAD_INPUTS: dict[str, tuple[Callable[[Path], object], list[str], str]] = {
    "missing file": (lambda d: None, ["nope.png"], "nope.png: file does not exist"),
    "zero-byte": (lambda d: (d / "z.png").write_bytes(b""), ["z.png"], "z.png: zero-byte file"),
    "text named .png": (lambda d: (d / "t.png").write_text("hello"), ["t.png"], "t.png: not an image"),
    "truncated png": (lambda d: _truncated(d / "cut.png"), ["cut.png"], "cut.png: corrupt or truncated"),
    "too many pixels": (lambda d: _png(d / "big.png", 40, 40), ["big.png"],
                        "big.png: 40x40 = 1600 pixels exceeds the limit of 1000"),
    "folder named x.png in a folder": (lambda d: (d / "x.png").mkdir(), ["."], "x.png: is a folder, not an image"),
    "broken link in a folder": (lambda d: (d / "gone.png").symlink_to(d / "nowhere.png"), ["."],
                                "gone.png: broken or looping symbolic link"),
    "broken link given": (lambda d: (d / "gone.png").symlink_to(d / "nowhere.png"), ["gone.png"],
                          "gone.png: broken symbolic link"),
    "link loop given": (lambda d: (d / "loop.png").symlink_to(d / "loop.png"), ["loop.png"], "loop.png: broken"),
    "empty folder given": (lambda d: (d / "empty").mkdir(), ["empty"], "empty: folder holds no images"),
    "unsupported mode": (lambda d: Image.new("LAB", (8, 8)).save(d / "lab.tif"), ["lab.tif"],
                         "lab.tif: unsupported image mode 'LAB'"),
    "float in 0..255": (lambda d: tifffile.imwrite(d / "f.tif", np.full((8, 8), 200, np.float32)), ["f.tif"],
                        "f.tif: float values span [200, 200] (looks like 0..255 data)"),
    "two inputs, one output name": (lambda d: _png(d / "good1.jpg"), ["good1.jpg"],
                                    "good1.jpg: its output"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_reported_in_one_line_and_skipped(case, model, tmp_path, capsys, monkeypatch):
    make, names, message = BAD_INPUTS[case]
    ins, out = tmp_path / "in", tmp_path / "out"
    for name in GOOD:
        _png(ins / name)
    make(ins)
    before = _snapshot(tmp_path, out)
    monkeypatch.chdir(ins)  # inputs named relative to the input folder
    goods = [] if names == ["."] else list(GOOD)
    code = cli(["upscale", *goods, *names, "-o", str(out), "--model", str(model), "--max-pixels", "1000"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert any(line.startswith("failed: ") and message in line for line in err.splitlines()), err
    assert "Traceback" not in err and "1 failed" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD)  # the rest of the batch went through
    assert _snapshot(tmp_path, out) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: an unreadable file cannot be made")
def test_unreadable_input_is_reported_and_skipped(model, tmp_path, capsys):
    src = _png(tmp_path / "in" / "locked.png")
    good = _png(tmp_path / "in" / "good1.png")
    src.chmod(0)
    code = cli(["upscale", str(src), str(good), "-o", str(tmp_path / "out"), "--model", str(model)])
    assert code == 1 and "locked.png: cannot read the file: permission denied" in capsys.readouterr().err
    assert (tmp_path / "out" / "good1.png").is_file()


def _out_points_at_input(how: str) -> Callable[[Path, Path], None]:
    def make(ins: Path, out: Path) -> None:
        out.mkdir()
        if how == "symlink":
            (out / "good1.png").symlink_to(ins / "good1.png")
        else:
            os.link(ins / "good1.png", out / "good1.png")
    return make


def _foreign_file(ins: Path, out: Path) -> None:
    _png(out / "good2.png", 5, 5)  # the user's own picture, not an earlier output


def _blocked_subfolder(how: str) -> Callable[[Path, Path], None]:
    """A nested input (in/2024/x.png -> out/2024/x.png) whose output subfolder is a file, or a link
    to a folder outside the output folder (where the output would land unseen)."""
    def make(ins: Path, out: Path) -> None:
        _png(ins / "2024" / "x.png")
        out.mkdir()
        if how == "file":
            (out / "2024").write_text("notes")
        else:
            (ins.parent / "elsewhere").mkdir()
            (out / "2024").symlink_to(ins.parent / "elsewhere")
    return make


# Refused before anything is read or written: (extra args, set-up, expected one-line message).
# `{in}`/`{out}`/`{tmp}` stand for the input folder, the output folder and the test folder.
REFUSED: dict[str, tuple[list[str], Callable[[Path, Path], object] | None, str]] = {
    "negative tile": (["--tile", "-1"], None, "argument --tile: -1 is out of range (allowed: >= 0)"),
    "tile not a number": (["--tile", "big"], None, "argument --tile: 'big' is not a whole number"),
    "tile within overlap": (["--tile", "20", "--overlap", "16"], None, "--tile 20: must be 0 (whole image) or larger"),
    "negative overlap": (["--overlap", "-3"], None, "argument --overlap: -3 is out of range"),
    "zero threads": (["--threads", "0"], None, "argument --threads: 0 is out of range (allowed: 1..1024)"),
    "too many threads": (["--threads", "5000"], None, "argument --threads: 5000 is out of range"),
    "zero max pixels": (["--max-pixels", "0"], None, "argument --max-pixels: 0 is out of range"),
    "unknown provider": (["--provider", "gpu"], None, "argument --provider: invalid choice: 'gpu'"),
    "model missing": (["--model", "{tmp}/nope.onnx"], None, "nope.onnx: model file does not exist"),
    "model is a folder": (["--model", "{in}"], None, "{in}: is a folder, not an ONNX model file"),
    "model not onnx": (["--model", "{in}/good1.png"], None, "good1.png: not a loadable ONNX model"),
    "out-dir is a file": (["-o", "{tmp}/outfile"], lambda i, o: (i.parent / "outfile").write_text("notes"),
                          "--out-dir {tmp}/outfile: exists and is not a folder"),
    "out-dir is the input folder": (["-o", "{in}"], None, "output {in}/good1.png would overwrite the input {in}/good1.png"),
    "out-dir links to the input folder": (["-o", "{tmp}/link"], lambda i, o: (i.parent / "link").symlink_to(i),
                                          "would overwrite the input {in}/good1.png (and 1 more)"),
    "output is a symlink to an input": ([], _out_points_at_input("symlink"), "output {out}/good1.png would overwrite the input"),
    "output is a hard link of an input": ([], _out_points_at_input("hardlink"), "output {out}/good1.png would overwrite the input"),
    "output is someone else's file": ([], _foreign_file, "output {out}/good2.png already exists and was not written by gensr"),
    "output subfolder is a file": ([], _blocked_subfolder("file"), "output folder {out}/2024 exists and is not a folder"),
    "output subfolder links out": ([], _blocked_subfolder("link"),
                                   "output folder {out}/2024 links to {tmp}/elsewhere, outside {out}"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_argument_or_unsafe_output_refuses_the_run_in_one_line(case, model, tmp_path, capsys):
    extra, setup, message = REFUSED[case]
    ins, out = tmp_path / "in", tmp_path / "out"
    for name in GOOD:
        _png(ins / name)
    if setup:
        setup(ins, out)
    fill = {"{in}": str(ins), "{out}": str(out), "{tmp}": str(tmp_path)}
    for key, value in fill.items():
        extra, message = [a.replace(key, value) for a in extra], message.replace(key, value)
    listing = sorted(os.listdir(out)) if out.is_dir() else None
    before = _snapshot(tmp_path, out)
    argv = ["upscale", str(ins), "-o", str(out), "--model", str(model)]
    code = cli(argv + extra)  # argparse keeps the last -o/--model given
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert (sorted(os.listdir(out)) if out.is_dir() else None) == listing  # nothing written
    assert _snapshot(tmp_path, out) == before


def test_write_failure_is_one_line_but_a_bug_keeps_its_traceback(model, tmp_path, capsys, monkeypatch):
    import gensr.infer.batch as batch  # where gensr upscale reads, upscales and writes each file

    ins = tmp_path / "in"
    for name in GOOD:
        _png(ins / name)
    real_save = batch.save_png

    def disk_full_on_good1(dst, *args):
        if dst.name == "good1.png":
            raise OSError(28, "No space left on device")
        return real_save(dst, *args)

    monkeypatch.setattr(batch, "save_png", disk_full_on_good1)
    code = cli(["upscale", str(ins), "-o", str(tmp_path / "out"), "--model", str(model)])
    err = capsys.readouterr().err
    assert code == 1 and f"good1.png: cannot write {tmp_path / 'out' / 'good1.png'}: No space left on device" in err
    assert "Traceback" not in err and (tmp_path / "out" / "good2.png").is_file()

    def broken(model, img, *args):
        raise TypeError("a bug")

    monkeypatch.setattr(batch, "upscale_array", broken)
    code = cli(["upscale", str(ins), "-o", str(tmp_path / "out2"), "--model", str(model)])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" in err and "TypeError: a bug" in err and "is a bug" in err


def test_nested_folders_keep_their_subfolders_and_other_files_are_noted(model, tmp_path, capsys):
    """Cameras name files alike: 2024/IMG_1.jpg and 2025/IMG_1.png both come out, in their own
    subfolders; a file given by name goes to the top; non-image files are listed, not read."""
    ins, out = tmp_path / "photos", tmp_path / "out"
    _png(ins / "2024" / "IMG_1.png", 10, 12)
    (ins / "2025").mkdir()
    Image.fromarray(smooth_image(np.random.default_rng(1), 12, 10)).save(ins / "2025" / "IMG_1.jpg")
    (ins / "notes.txt").write_text("shot list")
    (ins / "2025" / "clip.mov").write_bytes(b"\0" * 10)
    extra = _png(tmp_path / "extra.png", 8, 8)
    before = _snapshot(tmp_path, out)
    argv = ["upscale", str(ins), str(extra), "-o", str(out), "--model", str(model)]
    assert cli(argv) == 0
    err = capsys.readouterr().err
    assert "skipped 2 file(s) not named as images" in err and "2025/clip.mov, notes.txt" in err, err
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert made == ["2024/IMG_1.png", "2025/IMG_1.png", "extra.png"]
    assert Image.open(out / "2025" / "IMG_1.png").size == (20, 24)  # the jpg, not the other IMG_1
    assert _snapshot(tmp_path, out) == before
    assert cli(argv) == 0  # a rerun replaces its own outputs, and does not read them as inputs
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == made
