"""bench/quality.py --eval NAME=FOLDER: any folder of HR images scored with the Set5/Set14 protocol,
beside them (a tiny model rescored with --score-only: no training, seconds on a CPU)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import eval_fixtures as fx
from gensr.checkpoint import load_model
from gensr.data.ops import modcrop
from gensr.data.resize import bicubic_upscale
from gensr.evaluate.inference import upscale
from gensr.evaluate.sets import bicubic_degrade
from gensr.io import read_image
from gensr.metrics import psnr_y, ssim_y

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
sys.modules["bench_quality"] = quality  # its dataclasses look their module up while it loads
_spec.loader.exec_module(quality)


def tiny_benchmarks(tmp_path: Path, monkeypatch) -> Path:
    """A one-image Set5 and Set14 (standard LR files), and a tracking database in tmp_path."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    bench = tmp_path / "benchmarks"
    fx.write_benchmark(bench / "Set5", [("rocket", 41, 38)], standard_lr=True)
    fx.write_benchmark(bench / "Set14", [("coffee", 36, 45)], standard_lr=True)
    return bench


def test_eval_folder_is_scored_with_the_benchmark_protocol(tmp_path, monkeypatch, capsys):
    bench = tiny_benchmarks(tmp_path, monkeypatch)
    mine = tmp_path / "mine"
    fx.write_benchmark(mine, [("astronaut", 45, 39), ("chelsea", 38, 50)], standard_lr=False)
    work = tmp_path / "work"
    model = fx.write_model(work / "ae-full-x2" / "models", "ae", 2, kind="gan")  # a sharpening net, not bicubic
    (model.parent / "metrics.json").write_text(json.dumps({"steps": 4, "seconds": 1.0, "val_psnr_y": 30.0}))

    argv = ["--photos", str(tmp_path), "--benchmarks", str(bench), "--variant", "ae", "--scales", "2",
            "--work", str(work), "--score-only", "--eval", f"Mine={mine / 'HR'}"]
    assert quality.main(argv) == 0
    result = json.loads((work / "quality-ae-full-x2.json").read_text())["results"][0]
    assert set(result["sets"]) == set(result["bicubic"]) == {"Set5", "Set14", "Mine"}

    # The protocol by hand: HR modcropped, LR = the project's MATLAB bicubic of it, PSNR/SSIM on Y
    # with `scale` pixels shaved; bicubic = the project's one baseline.
    net = load_model(model, scale=2, channels=3)[0].eval()
    hrs = [modcrop(read_image(p), 2) for p in sorted((mine / "HR").glob("*.png"))]
    lrs = [bicubic_degrade(hr, 2) for hr in hrs]
    for method, run in (("sets", lambda lr: upscale(net, lr, 2)), ("bicubic", lambda lr: bicubic_upscale(lr, 2))):
        srs = [run(lr) for lr in lrs]
        got = result[method]["Mine"]
        assert got["psnr_y"] == pytest.approx(np.mean([psnr_y(sr, hr, 2) for sr, hr in zip(srs, hrs)]), abs=1e-6)
        assert got["ssim_y"] == pytest.approx(np.mean([ssim_y(sr, hr, 2) for sr, hr in zip(srs, hrs)]), abs=1e-6)
    assert abs(result["sets"]["Mine"]["psnr_y"] - result["bicubic"]["Mine"]["psnr_y"]) > 0.05
    table = capsys.readouterr().out
    assert "| Set5 x2 PSNR/SSIM-Y (Δ bicubic), hf, texture | Set14 x2 PSNR/SSIM-Y (Δ bicubic), hf, texture | Mine x2" in table
    mine_psnr = f"{result['sets']['Mine']['psnr_y']:.2f} / {result['sets']['Mine']['ssim_y']:.4f}"
    assert mine_psnr in table
    assert f"texture {result['sets']['Mine']['texture_distance']:.3f}" in table


def test_bad_eval_entries_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="expected NAME=FOLDER"):
        quality.scored_sets(tmp_path, [str(tmp_path)])
    with pytest.raises(SystemExit, match="no such folder"):
        quality.scored_sets(tmp_path, [f"Gone={tmp_path / 'gone'}"])
    with pytest.raises(SystemExit, match="the name set5 is taken"):
        quality.scored_sets(tmp_path, [f"set5={tmp_path}"])


def test_budget_plans_steps_from_an_earlier_runs_share_in_optimisation(tmp_path):
    # 60 minutes at 0.4 s per optimisation step: 9000 steps if nothing but optimisation took time
    assert quality.planned_steps(3600, 0.4, 1.0) == int(quality.SAFETY * 3600 / 0.4)
    timings = tmp_path / "models" / "ae_res" / "timings.json"
    fraction, source = quality.optim_fraction(timings)  # no earlier run: the default share
    assert fraction == quality.DEFAULT_OPTIM_FRACTION < 1 and "DEFAULT_OPTIM_FRACTION" in source
    timings.parent.mkdir(parents=True)
    timings.write_text(json.dumps({"fractions": {"optim": 0.8, "val": 0.1, "other": 0.1}, "steps": 100}))
    assert quality.optim_fraction(timings) == (0.8, str(timings))
    steps = quality.planned_steps(3600, 0.4, 0.8)
    # those steps plus the overhead measured around them (20% of the wall) end inside the budget
    assert steps == int(quality.SAFETY * 0.8 * 3600 / 0.4) and steps * 0.4 / 0.8 <= 3600
    assert quality.planned_steps(10, 5.0, 0.5) == 10  # never fewer than 10


def test_generative_table_and_side_by_side_crop(tmp_path, capsys):
    """bench/generative.py: every method scored on Set5/Set14 with the evaluate stage's measures,
    and one picture of the methods (the VAE with its uncertainty map) on the chosen Set14 image."""
    spec = importlib.util.spec_from_file_location("bench_generative", ROOT / "bench" / "generative.py")
    generative = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generative)
    bench = tmp_path / "benchmarks"
    fx.write_benchmark(bench / "Set5", [("rocket", 41, 38)], standard_lr=True)
    fx.write_benchmark(bench / "Set14", [("coffee", 36, 45), ("chelsea", 38, 50)], standard_lr=True)
    models = {v: fx.write_model(tmp_path / "models", v, 2) for v in ("gan", "vae")}
    out = tmp_path / "out"
    argv = ["--scale", "2", "--benchmarks", str(bench), "--crop-image", "chelsea", "--out", str(out),
            *[f"--model={v}={p}" for v, p in models.items()]]
    assert generative.main(argv) == 0
    result = json.loads((out / "generative.json").read_text())
    assert set(result["table"]) == {"bicubic", "gan", "vae"}
    for per_set in result["table"].values():
        assert set(per_set) == {"Set5", "Set14"}
        assert set(per_set["Set14"]) == {"psnr_y", "ssim_y", "hf_ratio", "texture_distance", "gmsd"}
    assert result["table"]["gan"]["Set14"]["hf_ratio"] > result["table"]["bicubic"]["Set14"]["hf_ratio"]
    crop = read_image(out / "crop-chelsea-x2.png")
    assert crop.ndim == 3 and crop.shape[1] > 4 * 150  # four panels per row
    table = capsys.readouterr().out
    assert "| gan | " in table and "| vae | " in table
    with pytest.raises(SystemExit, match="expected NAME=MODEL_FILE"):
        generative.main(["--scale", "2", "--benchmarks", str(bench), "--model", "gan=/nonexistent.pt"])
    with pytest.raises(SystemExit, match="inside --benchmarks"):
        generative.main([*argv, "--out", str(bench / "Set14" / "HR")])
    assert sorted(p.name for p in (bench / "Set14" / "HR").iterdir()) == ["chelsea.png", "coffee.png"]


@pytest.mark.parametrize("variant", ["gan", "vae"])
def test_a_fine_tune_starts_from_this_benchs_ae_res_run(tmp_path, variant):
    """A bench gan/vae run starts from the bench's own ae_res of the same profile and scale, and its
    config passes the schema (train_from, dvc.yaml's dependency, names the same file)."""
    from argparse import Namespace

    from gensr.schema import validate

    work = tmp_path / "work"
    start = work / "ae_res-full-x4" / "models" / "ae_res" / "model.pt"
    start.parent.mkdir(parents=True)
    start.write_bytes(b"weights")
    args = Namespace(variant=variant, profile="full", seed=0, set=[])
    tag, _, cfg = quality.run_config(args, 4, tmp_path / "photos", work)
    assert tag == f"{variant}-full-x4"
    assert cfg.models[variant].init_from == str(start) == cfg.train_from[variant]
    validate(cfg)
    other = tmp_path / "mine.pt"
    args = Namespace(variant=variant, profile="full", seed=0, set=[f"models.{variant}.init_from={other}"])
    _, _, cfg = quality.run_config(args, 4, tmp_path / "photos", work)
    assert cfg.models[variant].init_from == str(other) == cfg.train_from[variant]
    validate(cfg)


def test_fixed_steps_train_exactly_that_many_without_a_budget(tmp_path, monkeypatch, capsys):
    """--steps N: the recipe compared at equal work (no wall-clock plan), still scored like the rest."""
    from data_photos import write_photos

    bench = tiny_benchmarks(tmp_path, monkeypatch)
    photos = tmp_path / "photos"
    write_photos(photos, 6, h=96, w=128)
    work = tmp_path / "work"
    argv = ["--photos", str(photos), "--benchmarks", str(bench), "--variant", "ae", "--profile", "quick",
            "--scales", "2", "--steps", "14", "--work", str(work), "--set", f"data.out_dir={tmp_path / 'prepared'}"]
    assert quality.main(argv) == 0
    result = json.loads((work / "quality-ae-quick-x2.json").read_text())["results"][0]
    # whole validation intervals (14 // 4 = 3 steps each): 12 steps, and no budget re-planned them
    assert (result["fixed_steps"], result["steps"], result["budget_min"]) == (12, 12, None)
    metrics = json.loads((work / "ae-quick-x2" / "models" / "ae" / "metrics.json").read_text())
    assert metrics["steps"] == 12 and not metrics.get("time_budget_s")
    assert "| ae (quick, x2) | " in capsys.readouterr().out
    # rescored, it still says how it was trained
    assert quality.main([*argv, "--score-only"]) == 0
    again = json.loads((work / "quality-ae-quick-x2.json").read_text())["results"][0]
    assert (again["fixed_steps"], again["budget_min"]) == (12, None)
    assert again["sets"] == result["sets"]


def test_fixed_steps_are_at_least_ten(tmp_path, capsys):
    with pytest.raises(SystemExit):
        quality.main(["--photos", str(tmp_path), "--benchmarks", str(tmp_path), "--steps", "3"])
    assert "--steps 3: at least 10" in capsys.readouterr().err
