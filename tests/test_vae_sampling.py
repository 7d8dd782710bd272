"""Sampling from the variational nets: the torch API, the sampling ONNX, and `gensr sample`."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from export_helpers import (
    TEST_CROPS,
    LocalSR,
    cli_without_heavy_imports,
    export_file,
    photo_pair,
    tiny_vae_res,
)
from PIL import Image

from gensr.archs.vae import VariationalSR
from gensr.cli import main as cli
from gensr.config import compose
from gensr.data.resize import bicubic_upscale
from gensr.infer import session as runtime
from gensr.export.sampler import export_sampler, ship_rule
from gensr.export.validate import to_nchw
from gensr.io import read_image, to_uint8
from gensr.metrics import psnr_y

ROOT = Path(__file__).resolve().parents[1]
META = {"variant": "vae", "scale": 2, "channels": 3, "mlflow_run_id": "r0", "git_commit": "abc", "manifest_hash": "m"}


@pytest.fixture(scope="module")
def net():
    return tiny_vae_res()


@pytest.fixture(scope="module")
def pairs():
    return [(f"{n}_{y}_{x}", *photo_pair(n, y, x, s)) for n, y, x, s in TEST_CROPS]


@pytest.fixture(scope="module")
def exported(net, pairs, tmp_path_factory):
    """export_sampler as the stage runs it (the stage's tolerances and shipping rule), on the test
    crops; the shipped file and the crops' LR as PNGs for the CLI."""
    ex = compose(["export.parity_shapes=[[17,23],[64,64]]"], root=ROOT).export
    entry, blob = export_sampler(net, META, ex, pairs, ["CPUExecutionProvider"])
    d = tmp_path_factory.mktemp("sampler")
    assert blob is not None, entry.get("rejected")
    (d / "model.sample.onnx").write_bytes(blob)
    (d / "in").mkdir()
    for name, lr, _ in pairs:
        Image.fromarray(to_uint8(lr)).save(d / "in" / f"{name}.png")
    return entry, d


def _lr(net_channels: int = 3, h: int = 21, w: int = 30) -> torch.Tensor:
    return torch.rand(1, net_channels, h, w, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("downsample", [False, True])
def test_variational_sr_samples_are_seeded_diverse_and_forward_stays_mu(downsample):
    torch.manual_seed(0)
    net = VariationalSR(2, features=8, n_blocks=1, latent=4, downsample=downsample).eval()
    torch.nn.init.normal_(net.upsample.body[-1].weight, std=0.05)  # zero-initialised: noise would not show
    lr = _lr()
    with torch.no_grad():
        mu_out = net(lr)
        a, b = (net.sample(lr, generator=torch.Generator().manual_seed(s)) for s in (0, 0))
        c = net.sample(lr, generator=torch.Generator().manual_seed(1))
        assert torch.equal(net(lr), mu_out) and torch.equal(a, b) and not torch.equal(a, c)
        assert a.shape == mu_out.shape == (1, 3, 42, 60)
        mu, _ = net.encode(lr)
        assert tuple(mu.shape) == net.noise_shape(1, 21, 30)
        assert torch.equal(net.sample(lr, noise=torch.zeros(mu.shape)), mu_out)  # eps = 0 is z = mu


def test_vae_res_samples_are_seeded_diverse_and_their_mean_approaches_the_z0_output(net):
    """The trained tiny CVAE: seeded samples, the noise `noise_shape` describes, and z = 0 (the
    prior's mean) as the deterministic output."""
    lr = to_nchw(photo_pair(*TEST_CROPS[1])[0])
    lr = torch.from_numpy(lr[:, :, :31, :27])  # odd sides: noise ceil(h/2) x ceil(w/2)
    with torch.no_grad():
        z0_out = net(lr)
        assert net.noise_shape(1, 31, 27) == (1, 4, 16, 14)
        assert torch.equal(net.sample(lr, noise=torch.zeros(net.noise_shape(1, 31, 27))), z0_out)
        with pytest.raises(RuntimeError):
            net.sample(lr, noise=torch.zeros(1, 4, 15, 14))
        a, b = (net.sample(lr, generator=torch.Generator().manual_seed(7)) for _ in range(2))
        c = net.sample(lr, generator=torch.Generator().manual_seed(8))
        assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(net(lr), z0_out)
        # The generator draws exactly the noise `noise_shape` describes.
        eps = torch.randn(net.noise_shape(1, 31, 27), generator=torch.Generator().manual_seed(7))
        assert torch.equal(net.sample(lr, noise=eps), a)
        # A small temperature (1e-3; float64 so the effect is far above rounding): the decoder is
        # linear around z = 0 at that scale, so the mean of 64 samples lies ~1/8 as far from the
        # z = 0 output as one sample does.
        net64, lr64 = tiny_vae_res().double(), lr.double()
        z64, g = net64(lr64), torch.Generator().manual_seed(0)
        draws = torch.stack([net64.sample(lr64, generator=g, temperature=1e-3) for _ in range(64)])
    one_off = (draws[:8] - z64).abs().mean()
    mean_off = (draws.mean(0) - z64).abs().mean()
    assert one_off > 1e-9 and mean_off < one_off / 4


def test_sampler_onnx_matches_torch_for_the_same_noise_and_beats_bicubic(net, pairs, exported):
    entry, d = exported
    assert entry["parity"]["passed"] and entry["parity"]["max_abs_diff"] <= 1e-4
    assert {"random_b2_17x23", "random_b1_64x64", f"test_{pairs[0][0]}"} <= entry["parity"]["cases"].keys()
    assert entry["providers"] == ["CPUExecutionProvider"] and entry["noise_shape"] == "[N, 4, ceil(H/2), ceil(W/2)]"
    blob = (d / "model.sample.onnx").read_bytes()
    assert entry["shipped"] and entry["sha256"] == hashlib.sha256(blob).hexdigest()
    # Independently of the stage's own check: ORT vs torch on fresh noise, odd sides, batch 2.
    session = runtime.make_session(blob, ["CPUExecutionProvider"])
    meta = runtime.read_metadata(session, "sampler", sampler=True)
    assert meta["kind"] == "sampler" and (meta["noise_channels"], meta["noise_stride"]) == (4, 2)
    lr = np.random.default_rng(3).random((2, 3, 19, 26), dtype=np.float32)
    noise = runtime.sample_noise(runtime.noise_shape(meta, 2, 19, 26), seed=11, index=0)
    with torch.no_grad():
        expected = net.sample(torch.from_numpy(lr), noise=torch.from_numpy(noise)).clamp(0, 1).numpy()
    assert np.abs(runtime.run(session, lr, noise) - expected).max() <= 1e-4
    # Every seeded sample of every test crop is above bicubic (the shipping rule with margin 0).
    quality = entry["quality"]
    assert quality["samples_per_image"] == 4 and quality["worst_margin_over_bicubic_db"] >= 0
    for name, lr_img, hr in pairs:
        scores = quality["per_image"][name]
        assert scores["bicubic_psnr_y"] == pytest.approx(psnr_y(bicubic_upscale(lr_img, 2), hr, border=2), abs=1e-4)
        assert min(scores["samples"]) >= scores["bicubic_psnr_y"] and len(set(scores["samples"])) > 1
    rejected = ship_rule(quality, min_margin_db=quality["worst_margin_over_bicubic_db"] + 0.01)
    assert not rejected["shipped"] and "from bicubic" in rejected["rejected"]


def _sample(d: Path, out: Path, *extra: str) -> int:
    return cli(["sample", str(d / "in"), "-m", str(d / "model.sample.onnx"), "-o", str(out), *extra])


def test_cli_writes_seeded_samples_above_bicubic_and_a_std_map(exported, pairs, tmp_path):
    _, d = exported
    assert _sample(d, tmp_path / "a", "-n", "3", "--seed", "4", "--std-map") == 0
    assert _sample(d, tmp_path / "b", "-n", "3", "--seed", "4", "--tile", "40", "--overlap", "16") == 0
    assert _sample(d, tmp_path / "c", "-n", "1", "--seed", "5") == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["sample0", "sample1", "sample2", "std"]
    for name, lr, hr in pairs:
        bicubic = psnr_y(bicubic_upscale(lr, 2), hr, border=2)
        files = [tmp_path / "a" / f"sample{k}" / f"{name}.png" for k in range(3)]
        samples = [read_image(f) for f in files]
        assert all(psnr_y(s, hr, border=2) > bicubic for s in samples)
        assert not np.array_equal(samples[0], samples[1])
        # Same seed: same sample, tiled or not (the noise follows the tile's latent offset).
        tiled = read_image(tmp_path / "b" / "sample1" / f"{name}.png")
        assert np.abs(tiled - samples[1]).max() <= 1.5 / 255
        assert not np.array_equal(read_image(tmp_path / "c" / "sample0" / f"{name}.png"), samples[0])
        std = np.asarray(Image.open(tmp_path / "a" / "std" / f"{name}.png"), np.float64)
        expected = np.std(np.stack(samples), axis=0).mean(axis=2) / 0.05  # 8-bit samples vs float: close
        assert std.shape == hr.shape[:2] and std.max() > 0
        assert np.abs(std / 255 - np.clip(expected, 0, 1)).mean() < 0.02
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave no temp files


def test_cli_rejects_bad_arguments_and_outputs_over_inputs(exported, tmp_path, capsys):
    _, d = exported
    for bad in (["-n", "0"], ["-n", "x"], ["--seed", "-1"], ["--seed", "1.5"], ["-n", "1", "--std-map"],
                ["--temperature", "nan"]):
        assert _sample(d, tmp_path / "out", *bad) == 2, bad
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("-n" in err or "--seed" in err or "--temperature" in err), err
    assert not (tmp_path / "out").exists()
    # The output folder of sample 0 holds the inputs: nothing may land on them.
    inputs = tmp_path / "o" / "sample0"
    inputs.mkdir(parents=True)
    for f in (d / "in").iterdir():
        (inputs / f.name).write_bytes(f.read_bytes())
    before = {f.name: f.read_bytes() for f in inputs.iterdir()}
    files = [str(f) for f in sorted(inputs.iterdir())]
    code = cli(["sample", *files, "-m", str(d / "model.sample.onnx"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "would overwrite the input" in err and "nothing was written" in err
    assert {f.name: f.read_bytes() for f in inputs.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["sample0"]


def test_each_command_refuses_the_other_kind_of_model(exported, tmp_path, capsys):
    _, d = exported
    plain = export_file(LocalSR(), tmp_path / "model.onnx", "local", 2, 3)
    assert cli(["sample", str(d / "in"), "-m", str(plain), "-o", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "not a sampling model" in err and str(plain) in err and len(err.strip().splitlines()) == 1
    assert cli(["upscale", str(d / "in"), "-m", str(d / "model.sample.onnx"), "-o", str(tmp_path / "u")]) == 2
    err = capsys.readouterr().err
    assert "a sampling model" in err and "gensr sample" in err and len(err.strip().splitlines()) == 1
    assert onnx.load(plain).metadata_props and not (tmp_path / "s").exists() and not (tmp_path / "u").exists()


def test_sample_runs_with_torch_unimportable(exported, tmp_path):
    _, d = exported
    proc = cli_without_heavy_imports(["sample", str(d / "in"), "-m", str(d / "model.sample.onnx"),
                                      "-o", str(tmp_path / "out"), "-n", "2", "--std-map"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").rglob("*.png"))) == 3 * len(TEST_CROPS)


def test_cli_keeps_a_folders_subfolders_in_every_sample_folder(exported, tmp_path, capsys):
    _, d = exported
    name = sorted((d / "in").iterdir())[0].name
    for sub in ("a", "b"):  # the same file name in two subfolders: both are sampled
        (tmp_path / "in" / sub).mkdir(parents=True)
        (tmp_path / "in" / sub / name).write_bytes((d / "in" / name).read_bytes())
    out = tmp_path / "out"
    code = cli(["sample", str(tmp_path / "in"), "-m", str(d / "model.sample.onnx"), "-o", str(out), "-n", "2",
                "--std-map"])
    assert code == 0, capsys.readouterr().err
    stem = Path(name).stem
    for folder in ("sample0", "sample1", "std"):
        assert sorted(str(p.relative_to(out / folder)) for p in (out / folder).rglob("*.png")) == \
            [f"a/{stem}.png", f"b/{stem}.png"]
    assert f"sample*/a/{stem}.png" in capsys.readouterr().out
    # seeded per (seed, k), whatever the file's folder: the two copies get the same samples
    assert np.array_equal(read_image(out / "sample1" / "a" / f"{stem}.png"),
                          read_image(out / "sample1" / "b" / f"{stem}.png"))
