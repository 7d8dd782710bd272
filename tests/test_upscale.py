"""The production upscaler: tiling seams, memory, input kinds, bad models/images, no torch."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
import tifffile
from export_helpers import (SMALL_AE, LocalSR, cli_without_heavy_imports, export_file, python_without_heavy_imports,
                            smooth_image)
from hydra.utils import instantiate
from PIL import Image

from gensr.cli import main as cli
from gensr.infer.tiling import _ramps, check_tiling, tile_spans, upscale_array
from gensr.infer.batch import ImageOptions, SRModel, upscale_file
from test_io_modes import write_png16

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An RGB x2 model with a stride-2 latent (the real `ae` architecture, small) and a grey x3 one."""
    import torch

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models")
    rgb = export_file(instantiate({**SMALL_AE, "scale": 2, "channels": 3}), d / "rgb_x2.onnx", "ae", 2, 3)
    grey = export_file(LocalSR(scale=3, channels=1), d / "grey_x3.onnx", "local", 3, 1)
    return {"rgb": rgb, "grey": grey}


@pytest.fixture(scope="module")
def rgb_model(models):
    return SRModel(models["rgb"], ["CPUExecutionProvider"], threads=2)


def test_tiles_cover_with_overlap_aligned_starts_and_unit_weights():
    for length in (1, 40, 64, 65, 100, 150, 257, 1000):
        spans = tile_spans(length, 64, 16)
        assert spans[0][0] == 0 and sum(spans[-1]) == length
        assert all(a % 8 == 0 for a, _ in spans)  # stride-2/4/8 nets see the image's sampling phase
        assert all(sum(spans[i]) - spans[i + 1][0] >= 16 for i in range(len(spans) - 1))
        total = np.zeros(length * 2)
        for (a, _), w in zip(spans, _ramps(spans, length, 2)):
            total[a * 2 : a * 2 + len(w)] += w
        np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_seam_tiled_equals_untiled_within_one_level(rgb_model):
    img = smooth_image(np.random.default_rng(1), 150, 200).astype(np.float32) / 255
    assert len(tile_spans(150, 64, 16)) > 1 and len(tile_spans(200, 64, 16)) > 2
    full = np.clip(upscale_array(rgb_model, img, 2, tile=0), 0, 1)
    tiled = np.clip(upscale_array(rgb_model, img, 2, tile=64, overlap=16), 0, 1)
    assert np.abs(tiled - full).max() <= 1 / 255
    # The check has teeth: with this model, abutting tiles without overlap leave visible seams.
    hard = np.zeros_like(full)
    for y in range(0, 150, 64):
        for x in range(0, 200, 64):
            tile = img[y : y + 64, x : x + 64].transpose(2, 0, 1)[None]
            sr = rgb_model(np.ascontiguousarray(tile))[0].transpose(1, 2, 0)
            hard[2 * y : 2 * y + sr.shape[0], 2 * x : 2 * x + sr.shape[1]] = sr
    assert np.abs(np.clip(hard, 0, 1) - full).max() > 3 / 255


def test_tiler_tells_the_model_where_each_tile_lies():
    img = smooth_image(np.random.default_rng(10), 150, 200).astype(np.float32) / 255
    seen = []

    def model(lr: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
        (y, x), (th, tw) = origin, lr.shape[2:]
        assert np.array_equal(lr[0], img[y : y + th, x : x + tw].transpose(2, 0, 1))  # the tile at its origin
        seen.append((y, th, x, tw))
        return lr.repeat(2, axis=2).repeat(2, axis=3) * (1 + y + x)  # output depends on where the tile is

    out = upscale_array(model, img, 2, tile=64, overlap=16, with_origin=True)
    rows, cols = tile_spans(150, 64, 16), tile_spans(200, 64, 16)
    assert sorted(seen) == sorted((y, th, x, tw) for y, th in rows for x, tw in cols) and len(seen) > 6
    plain = upscale_array(lambda lr: lr.repeat(2, axis=2).repeat(2, axis=3), img, 2, tile=64, overlap=16)
    assert not np.allclose(out, plain)  # the origin reached the model
    seen.clear()
    upscale_array(model, img, 2, tile=0, with_origin=True)
    assert seen == [(0, 150, 0, 200)]  # untiled: one call, at the origin


def test_tiling_rule_is_one_check_with_the_callers_names():
    for tile, overlap in ((0, 0), (0, 100), (25, 16), (256, 16)):
        check_tiling(tile, overlap)
    with pytest.raises(ValueError, match=r"^--tile 24: must be 0 \(whole image\) or larger than --overlap \+ 8 = 24$"):
        check_tiling(24, 16, ("--tile", "--overlap"))
    with pytest.raises(ValueError, match="overlap -1: must be >= 0"):
        check_tiling(64, -1)
    img = np.zeros((8, 8, 3), np.float32)  # refused even where the image would fit one tile
    with pytest.raises(ValueError, match="tile 20"):
        upscale_array(lambda lr: lr.repeat(2, axis=2).repeat(2, axis=3), img, 2, tile=20, overlap=16)


def test_cli_seam_on_saved_pngs(models, tmp_path):
    src = tmp_path / "in" / "photo.png"
    src.parent.mkdir()
    Image.fromarray(smooth_image(np.random.default_rng(2), 90, 130)).save(src)
    for tile in (0, 40):
        assert cli(["upscale", str(src), "-o", str(tmp_path / f"t{tile}"), "--model", str(models["rgb"]),
                    "--tile", str(tile), "--overlap", "16"]) == 0
    a = np.asarray(Image.open(tmp_path / "t0" / "photo.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "t40" / "photo.png"), np.int16)
    assert a.shape == (180, 260, 3) and np.abs(a - b).max() <= 1
    assert sorted(p.name for p in (tmp_path / "t40").iterdir()) == ["photo.png"]  # no temp files left


class NearestX2:
    """Stands in for the network in the memory test: tracemalloc sees numpy's allocations (the
    upscaler's buffers), not onnxruntime's, so the network's cost is irrelevant here and the test
    stays fast. The real ONNX path through upscale_file is covered by the other tests."""

    scale, channels = 2, 3

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x.repeat(2, axis=2).repeat(2, axis=3)


def test_peak_memory_bounded_on_4k_output(tmp_path):
    src, dst = tmp_path / "hd.png", tmp_path / "out" / "hd.png"
    Image.fromarray(smooth_image(np.random.default_rng(3), 1080, 1920)).save(src)
    accumulator = 2160 * 3840 * 3 * 4  # the float32 output: the one full-size buffer allowed
    tracemalloc.start()
    try:
        upscale_file(NearestX2(), src, dst, ImageOptions(tile=256, overlap=16, max_pixels=None))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert Image.open(dst).size == (3840, 2160)
    # Untiled inference alone would hold the NCHW output, its HWC copy and float64 quantisation
    # temporaries (> 4x the accumulator); tiles + in-place quantisation stay near 1x.
    assert peak < 1.5 * accumulator, f"peak {peak / 1e6:.0f} MB vs accumulator {accumulator / 1e6:.0f} MB"


def test_grey_rgba_and_16bit_inputs(models, tmp_path):
    rng = np.random.default_rng(4)
    rgb = smooth_image(rng, 20, 30)
    grey8 = rgb[:, :, 0]
    alpha = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (20, 1))
    ins = tmp_path / "in"
    ins.mkdir()
    Image.fromarray(grey8).save(ins / "grey.png")
    Image.fromarray(np.dstack([rgb, alpha])).save(ins / "rgba.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(ins / "grey16.png")  # 16-bit PNG (I;16)
    out = tmp_path / "out"
    assert cli(["upscale", str(ins), "-o", str(out), "--model", str(models["rgb"])]) == 0
    grey_out, grey16_out = Image.open(out / "grey.png"), Image.open(out / "grey16.png")
    assert grey_out.mode == "L" and grey_out.size == (60, 40)  # grey in, grey out
    assert grey16_out.mode == "L"  # 16-bit in: same picture, written as 8-bit
    assert np.abs(np.asarray(grey16_out, int) - np.asarray(grey_out, int)).max() <= 1
    rgba_out = Image.open(out / "rgba.png")
    assert rgba_out.mode == "RGBA" and rgba_out.size == (60, 40)
    expected_alpha = np.asarray(Image.fromarray(alpha).resize((60, 40), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(np.asarray(rgba_out)[:, :, 3], expected_alpha)
    # A 1-channel model takes grey input (scale 3 from its metadata)...
    assert cli(["upscale", str(ins / "grey.png"), "-o", str(tmp_path / "g"), "--model", str(models["grey"])]) == 0
    assert Image.open(tmp_path / "g" / "grey.png").size == (90, 60)


def test_float_and_16bit_inputs_give_the_same_picture_as_8bit(models, tmp_path):
    """A [0, 1] float TIFF and a 48-bit PNG used to come out black / truncated: now each gives
    what its 8-bit twin gives, within one level."""
    rgb = smooth_image(np.random.default_rng(8), 24, 28)
    ins = tmp_path / "in"
    ins.mkdir()
    Image.fromarray(rgb).save(ins / "rgb8.png")
    Image.fromarray(rgb[:, :, 1]).save(ins / "grey8.png")
    tifffile.imwrite(ins / "float.tif", rgb[:, :, 1].astype(np.float32) / 255)  # mode F
    write_png16(ins / "rgb16.png", rgb.astype(np.uint16) * 257)
    assert cli(["upscale", str(ins), "-o", str(tmp_path / "out"), "--model", str(models["rgb"])]) == 0

    def out(name: str) -> np.ndarray:
        return np.asarray(Image.open(tmp_path / "out" / f"{name}.png"), np.int16)

    assert out("float").shape == (48, 56) and out("float").mean() > 60  # grey in, grey out; not black
    assert np.abs(out("float") - out("grey8")).max() <= 1
    assert np.abs(out("rgb16") - out("rgb8")).max() <= 1


def test_kill_9_mid_batch_leaves_only_whole_pngs_and_a_rerun_completes(models, tmp_path):
    ins, out = tmp_path / "in", tmp_path / "out"
    ins.mkdir()
    rng = np.random.default_rng(9)
    for i in range(16):  # grey photos and the light x3 grey model: each output takes 0.05-0.15 s
        Image.fromarray(smooth_image(rng, 240, 320, channels=1)[:, :, 0]).save(ins / f"p{i}.png")
    cmd = [sys.executable, "-m", "gensr.cli", "upscale", str(ins), "-o", str(out), "--model", str(models["grey"]),
           "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(p.suffix == ".png" for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.005)
    time.sleep(random.uniform(0, 0.05))  # somewhere in the next image or two
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    finished = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert 1 <= len(finished) < 16, finished  # killed mid-batch, not after it
    for name in finished:  # whatever sits under a final name is a whole, decodable output
        with Image.open(out / name) as im:
            im.load()
            assert im.size == (960, 720)
    assert all(p.name.endswith(".tmp") for p in out.iterdir() if p.name.startswith("."))  # hidden temps only
    (out / ".p15.png.abcd1234.tmp").write_bytes(b"half")  # as a kill during p15's write leaves
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"p{i}.png" for i in range(16))  # temps gone


def test_bad_images_fail_alone_with_clear_messages(models, tmp_path, capsys):
    ins = tmp_path / "in"
    ins.mkdir()
    Image.fromarray(smooth_image(np.random.default_rng(5), 16, 16)).save(ins / "a_good.png")
    (ins / "b_text.png").write_text("not an image")
    (ins / "c_empty.png").write_bytes(b"")
    Image.fromarray(smooth_image(np.random.default_rng(6), 40, 40)).save(ins / "d_big.png")
    args = [str(ins / n) for n in ("a_good.png", "b_text.png", "c_empty.png", "d_big.png", "e_missing.png")]
    code = cli(["upscale", *args, "-o", str(tmp_path / "out"), "--model", str(models["rgb"]),
                "--max-pixels", "1000"])
    err = capsys.readouterr().err
    assert code == 1
    assert (tmp_path / "out" / "a_good.png").is_file()  # the good one still went through
    assert "b_text.png: not an image" in err and "c_empty.png: zero-byte file" in err
    assert "d_big.png: 40x40 = 1600 pixels exceeds the limit of 1000" in err
    assert "e_missing.png: file does not exist" in err and "4 failed" in err
    # Colour into a 1-channel model: refused by name, not silently turned grey.
    code = cli(["upscale", str(ins / "a_good.png"), "-o", str(tmp_path / "g"), "--model", str(models["grey"])])
    assert code == 1 and "a_good.png: wrong channel count" in capsys.readouterr().err


def _bad_models(models, d: Path) -> dict[str, tuple[Path, str]]:
    good = models["rgb"].read_bytes()
    (d / "corrupt.onnx").write_bytes(good[: len(good) // 3])
    (d / "random.onnx").write_bytes(os.urandom(2048))
    Image.new("RGB", (4, 4)).save(d / "picture.png")
    plain = onnx.load(models["rgb"])
    del plain.metadata_props[:]
    onnx.save(plain, d / "plain.onnx")
    lying = onnx.load(models["rgb"])
    for p in lying.metadata_props:
        if p.key == "channels":
            p.value = "1"
    onnx.save(lying, d / "lying.onnx")
    return {
        "corrupt": (d / "corrupt.onnx", "not a loadable ONNX model"),
        "random": (d / "random.onnx", "not a loadable ONNX model"),
        "not onnx": (d / "picture.png", "not a loadable ONNX model"),
        "missing": (d / "nope.onnx", "model file does not exist"),
        "a device": (Path("/dev/zero"), "not a regular file"),  # read whole, it would never end
        "no metadata": (d / "plain.onnx", "no gensr metadata"),
        "wrong channels": (d / "lying.onnx", "metadata says 1 channels but the graph input has 3"),
    }


def test_bad_model_files_are_refused_clearly(models, tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    for case, (path, message) in _bad_models(models, tmp_path).items():
        code = cli(["upscale", str(img), "-o", str(tmp_path / "out"), "--model", str(path)])
        err = capsys.readouterr().err
        assert code == 2 and str(path) in err and message in err, (case, err)
    assert not (tmp_path / "out").exists()


def test_upscaler_runs_with_torch_lightning_and_mlflow_unimportable(models, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(smooth_image(np.random.default_rng(7), 12, 10)).save(img)
    proc = cli_without_heavy_imports(["upscale", str(img), "-o", str(tmp_path / "out"), "--model", str(models["rgb"])],
                                     tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "out" / "x.png").size == (20, 24)
    assert "CPUExecutionProvider" in proc.stdout


def test_inference_modules_import_without_the_training_stack(tmp_path):
    import pkgutil

    import gensr.infer

    modules = ["gensr.cli", "gensr.upscale", "gensr.sample", "gensr.infer"]
    modules += [f"gensr.infer.{m.name}" for m in pkgutil.iter_modules(gensr.infer.__path__)]
    assert {"gensr.infer.session", "gensr.infer.tiling", "gensr.infer.batch"} <= set(modules)
    proc = python_without_heavy_imports(f"import importlib\nfor m in {modules!r}: importlib.import_module(m)", tmp_path)
    assert proc.returncode == 0, proc.stderr
