"""The evaluate stage end to end on a tiny trained project: metrics files, champion, pictures,
report content, MLflow runs; then the pipeline script, errors and tiled inference."""
from __future__ import annotations

import csv
import json
import re
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

import eval_fixtures as fx
from gensr.data.resize import bicubic_upscale
from gensr.evaluate.inference import upscale
from gensr.evaluate.sets import bicubic_degrade
from gensr.errors import EXIT_USER_ERROR
from gensr.evaluate.stage import run_evaluation
from gensr.io import read_image
from gensr.metrics import psnr_y

VARIANTS = ["ae", "smooth", "gan", "vae"]  # vae: variational, so its pictures get uncertainty maps
SCALE = 2


def _bench(root: Path) -> Path:
    """A benchmark folder: HR/ plus LR_bicubic/X2 for one image only (the other is degraded here)."""
    hr_dir = root / "bench" / "Tiny" / "HR"
    hr_dir.mkdir(parents=True)
    for i, (name, h, w) in enumerate([("rocket", 50, 45), ("coffee", 40, 60)]):
        hr = fx.photo(name, h, w)  # odd sizes: modcropped by the stage
        Image.fromarray(hr).save(hr_dir / f"{name}.png")
        if i == 0:
            lr = bicubic_degrade(hr[: h - h % SCALE, : w - w % SCALE].astype(np.float32) / 255, SCALE)
            (hr_dir.parent / "LR_bicubic" / "X2").mkdir(parents=True)
            Image.fromarray((lr * 255).round().astype(np.uint8)).save(hr_dir.parent / "LR_bicubic" / "X2" / f"{name}x2.png")
    return hr_dir


@pytest.fixture(scope="module")
def eval_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalproj")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)  # anything MLflow writes relative to cwd stays in the temp folder
    fx.write_split(root / "data" / "prepared", SCALE)
    run_id = fx.training_run(root / "mlflow.db", "ae")
    fx.write_model(root / "models", "ae", SCALE, run_id=run_id)
    fx.write_model(root / "models", "smooth", SCALE)
    fx.write_model(root / "models", "gan", SCALE, run_id="0123456789abcdef0123456789abcdef")  # unknown run
    fx.write_model(root / "models", "vae", SCALE)
    bench = _bench(root)
    cfg = fx.make_config(VARIANTS, SCALE, benchmarks={"Tiny": str(bench.relative_to(root))})
    out = run_evaluation(cfg, root)
    yield root, out, run_id
    mp.undo()


def _metrics(root):
    return json.loads((root / "reports" / "metrics.json").read_text())


def _csv(root):
    with open(root / "reports" / "per_image.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_metrics_json_has_every_set_and_method_with_deltas(eval_project):
    root, out, _ = eval_project
    m = _metrics(root)
    assert set(m) == {"test", "tiny"}
    for set_id, n in (("test", 3), ("tiny", 2)):
        assert set(m[set_id]) == {"bicubic", *VARIANTS}
        for method, e in m[set_id].items():
            assert e["n_images"] == n
            for k in ("psnr_y", "ssim_y", "psnr_rgb", "texture_distance", "hf_ratio", "gmsd", "seconds_per_image",
                      "ms_per_mp"):
                assert isinstance(e[k], float) and np.isfinite(e[k]), (set_id, method, k)
            assert 0 < e["psnr_y"] < 60 and 0 < e["ssim_y"] <= 1  # "ae" is untrained: any low value
            assert e["delta_psnr_y"] == pytest.approx(e["psnr_y"] - m[set_id]["bicubic"]["psnr_y"], abs=1e-5)
    assert m["test"]["bicubic"]["params"] == 0 and m["test"]["ae"]["params"] > 1000
    # The sharpening "GAN" restores more detail than the plain upsampler: visible in the numbers.
    assert m["test"]["gan"]["hf_ratio"] > m["test"]["smooth"]["hf_ratio"] + 0.1
    # Bilinear is blurrier than bicubic: further from HR's detail statistics.
    assert m["test"]["smooth"]["texture_distance"] > m["test"]["bicubic"]["texture_distance"] > 0


def test_per_image_rows_are_real_measurements(eval_project):
    root, _, _ = eval_project
    rows = _csv(root)
    assert len(rows) == (3 + 2) * (1 + len(VARIANTS))
    assert {r["lr_source"] for r in rows if r["set"] == "tiny"} == {"LR_bicubic", "degradation"}
    # Recompute one bicubic row from the files on disk, independently of the stage.
    row = next(r for r in rows if r["set"] == "test" and r["image"] == "coffee" and r["method"] == "bicubic")
    hr = read_image(root / "data/prepared/test/hr/coffee.png")
    lr = read_image(root / "data/prepared/test/lr/coffee.png")
    assert float(row["psnr_y"]) == pytest.approx(psnr_y(bicubic_upscale(lr, SCALE), hr, SCALE), abs=1e-3)
    assert (int(row["height"]), int(row["width"])) == hr.shape[:2]
    # Means in metrics.json are the means of these rows.
    m = _metrics(root)
    gan = [float(r["psnr_y"]) for r in rows if r["set"] == "test" and r["method"] == "gan"]
    assert m["test"]["gan"]["psnr_y"] == pytest.approx(np.mean(gan), abs=1e-4)


def test_champions_fidelity_and_perceptual_on_test_without_timings(eval_project):
    root, out, _ = eval_project
    champ = json.loads((root / "reports" / "champion.json").read_text())
    assert set(champ) == {"variant", "psnr_y", "set", "perceptual"} and champ["set"] == "test"
    test = _metrics(root)["test"]
    best = max(VARIANTS, key=lambda v: test[v]["psnr_y"])
    assert champ["variant"] == best and champ["psnr_y"] == pytest.approx(test[best]["psnr_y"], abs=1e-4)
    # No untrained stand-in is 1 dB above bicubic: the fallback is explicit, not a silent pick.
    perc = champ["perceptual"]
    assert set(perc) == {"variant", "psnr_y", "set", "texture_distance", "min_psnr_y", "qualified", "fallback", "rule"}
    assert perc["min_psnr_y"] == pytest.approx(test["bicubic"]["psnr_y"] + 1.0, abs=1e-4)
    assert all(test[v]["psnr_y"] < perc["min_psnr_y"] for v in VARIANTS)
    assert perc["qualified"] is False and perc["variant"] == best and "bicubic + 1 dB" in perc["fallback"]
    assert perc["texture_distance"] == pytest.approx(test[best]["texture_distance"], abs=1e-4)


def test_comparison_pictures_for_every_image(eval_project):
    root, _, _ = eval_project
    pics = sorted(p.relative_to(root / "reports" / "comparisons").as_posix()
                  for p in (root / "reports" / "comparisons").rglob("*.png"))
    assert pics == ["test/astronaut.png", "test/chelsea.png", "test/coffee.png", "tiny/coffee.png", "tiny/rocket.png"]
    img = np.asarray(Image.open(root / "reports/comparisons/test/coffee.png").convert("RGB"))
    # thumbnail + LR + bicubic + 4 variants + the vae's uncertainty map + HR = 9 panels of 192 px:
    # two rows of up to 5.
    assert img.shape[1] > 5 * 192 and img.shape[0] > 2 * 192
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1000  # real picture content, not a blank
    assert not list((root / "reports").glob(".comparisons.*"))  # temp folder swapped in, not left


def test_dvc_plot_files_exist(eval_project):
    root, _, _ = eval_project
    lb = list(csv.DictReader(open(root / "reports/plots/leaderboard.csv")))
    assert [r["method"] for r in lb] == ["bicubic", *VARIANTS]
    assert all(float(r["texture_distance"]) > 0 for r in lb)
    for png in ("comparison.png", "training_curves.png"):
        im = Image.open(root / "reports" / "plots" / png)
        assert im.width > 300 and np.asarray(im.convert("L")).std() > 10


def test_report_is_self_contained_with_leaderboard_and_pictures(eval_project):
    root, out, _ = eval_project
    html = (root / "reports" / "index.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no external resources"
    assert "<script" not in html
    imgs = re.findall(r'<img src="([^"]+)"', html)
    assert len(imgs) == 5 + 2 and all(s.startswith("data:image/png;base64,") for s in imgs)
    champ = out["champion"]["variant"]
    assert re.search(rf"<td class=\"name\">{champ} ★ ◆</td>", html)  # both: the perceptual fell back
    assert "no variant reached bicubic + 1 dB" in html
    for name in ["bicubic", *VARIANTS]:
        assert f'<td class="name">{name}' in html
    assert "Δ PSNR vs bicubic" in html and "ms / megapixel" in html and "HF detail ratio" in html
    # Fidelity and perception are column groups, each spanning its columns for both sets.
    assert '<th class="group" colspan="4">Fidelity</th>' in html
    assert '<th class="group" colspan="6">Perception</th>' in html and "texture distance ↓" in html
    # The uncertainty map is explained beside the vae's pictures, and only there.
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", html)
    assert len(captions) == 5 and all("std panel: per-pixel standard deviation of 8 samples (seed 0) of vae," in c
                                      for c in captions)
    assert "LPIPS skipped" in html  # the honest note when no local LPIPS model is configured
    assert "Training curves" in html


def test_mlflow_runs_carry_the_same_metric_names_and_the_champion_tag(eval_project):
    import mlflow

    root, out, train_run = eval_project
    client = mlflow.MlflowClient()
    m = _metrics(root)
    run_ids = out["run_ids"]
    assert run_ids["ae"] == train_run  # metrics land on the training run itself
    names = None
    for v in VARIANTS:
        run = client.get_run(run_ids[v])
        assert run.data.metrics["test/psnr_y"] == pytest.approx(m["test"][v]["psnr_y"], abs=1e-5)
        assert run.data.metrics["tiny/hf_ratio"] == pytest.approx(m["tiny"][v]["hf_ratio"], abs=1e-5)
        keys = {k for k in run.data.metrics if "/" in k and k != "val/psnr_y"}
        assert names is None or keys == names  # same names on every variant: side-by-side view
        names = keys
        assert run.data.metrics["test/texture_distance"] == pytest.approx(m["test"][v]["texture_distance"], abs=1e-5)
        assert run.data.tags["gensr.champion"] == str(v == out["champion"]["variant"]).lower()
        assert run.data.tags["gensr.champion_perceptual"] == str(v == out["champion"]["perceptual"]["variant"]).lower()
        assert "evaluation/index.html" in [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")]
        assert run.info.status == "FINISHED"
    # No run id ("smooth", "vae") or one this store doesn't know ("gan"): a new run named after the variant.
    for v in ("smooth", "gan", "vae"):
        run = client.get_run(run_ids[v])
        assert run.info.run_name == v and run.data.tags["gensr.evaluation_only"] == "true"
    summary = client.get_run(out["summary_run_id"])
    assert summary.info.run_name == "evaluate"
    assert summary.data.tags["gensr.champion_variant"] == out["champion"]["variant"]
    assert summary.data.tags["gensr.champion_perceptual_variant"] == out["champion"]["perceptual"]["variant"]
    assert summary.data.tags["gensr.champion_perceptual_qualified"] == "false"
    arts = {a.path for a in client.list_artifacts(summary.info.run_id)}
    assert {"index.html", "metrics.json", "per_image.csv", "champion.json", "comparisons"} <= arts
    exp = client.get_experiment(summary.info.experiment_id)
    assert exp.tags["gensr.champion"] == out["champion"]["variant"]
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["gensr.champion_perceptual"] == out["champion"]["perceptual"]["variant"]
    html = (root / "reports" / "index.html").read_text()
    assert "trained without tracking" in html and "not in this tracking store" in html


def test_pipeline_script_with_other_eval_setting_keeps_champion_bytes(eval_project, tmp_path, monkeypatch, capsys):
    """Changing an evaluation setting rewrites the report but not champion.json (export's only input)."""
    root, _, _ = eval_project
    copy = tmp_path / "proj"
    for part in ("data", "models", "reports"):
        shutil.copytree(root / part, copy / part)
    (copy / "conf").mkdir()
    (copy / "dvc.yaml").write_text("stages: {}\n")
    OmegaConf.save(fx.make_config(VARIANTS, SCALE), copy / "params.yaml")
    before = (root / "reports" / "champion.json").read_bytes()
    # The stage script itself, in-process (a subprocess would pay torch's import again).
    script = runpy.run_path(str(fx.ROOT / "pipelines" / "evaluate.py"), run_name="evaluate_stage")
    monkeypatch.chdir(copy)  # DVC runs stages from the project root
    assert script["main"](["evaluate.crop_size=32", "evaluate.mlflow=false"]) == 0
    out = capsys.readouterr().out
    assert "champion:" in out and "bicubic" in out
    assert (copy / "reports" / "champion.json").read_bytes() == before
    assert not (copy / "reports" / "comparisons" / "tiny").exists()  # stale pictures removed
    assert "MLflow logging disabled" in (copy / "reports" / "index.html").read_text()
    # Bad input is a one-line error and the user-error exit status, not a traceback.
    shutil.rmtree(copy / "data" / "prepared" / "test" / "lr")
    assert script["main"](["evaluate.mlflow=false"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "run the prepare stage first" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_model_is_a_clear_error(eval_project, tmp_path):
    root, _, _ = eval_project
    (tmp_path / "data").symlink_to(root / "data")
    cfg = fx.make_config(["ae", "vae"], SCALE, mlflow=False)
    with pytest.raises(FileNotFoundError, match=r"models/ae/model\.pt.*models/vae/model\.pt|vae"):
        run_evaluation(cfg, tmp_path)


def test_bad_image_is_a_clear_error_and_closes_the_runs_it_opened(eval_project, tmp_path):
    import mlflow

    from gensr.io import BadImageError

    root, _, _ = eval_project
    shutil.copytree(root / "data", tmp_path / "data")
    (tmp_path / "models").symlink_to(root / "models")
    (tmp_path / "data/prepared/test/lr/chelsea.png").write_bytes(b"")
    with pytest.raises(BadImageError, match=r"chelsea\.png: zero-byte"):
        run_evaluation(fx.make_config(["smooth"], SCALE), tmp_path)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("gensr-test")
    runs = client.search_runs([exp.experiment_id], "tags.`gensr.evaluation_only` = 'true'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    assert runs[0].info.run_name == "smooth" and runs[0].info.status == "FAILED"


def test_missing_benchmark_folder_fails_or_is_skipped_with_a_note(eval_project, tmp_path):
    from gensr.evaluate.sets import eval_sets

    root, _, _ = eval_project
    bench = {"gone": "nowhere/HR"}
    with pytest.raises(FileNotFoundError, match="evaluate.benchmarks.gone"):
        eval_sets(root, "data/prepared", "test", bench, "fail")
    with pytest.warns(UserWarning, match="nowhere"):
        sets, notes = eval_sets(root, "data/prepared", "test", bench, "warn")
    assert [s.id for s in sets] == ["test"] and "skipped" in notes[0]


def test_missing_prepared_split_is_a_clear_error(eval_project, tmp_path):
    root, _, _ = eval_project
    (tmp_path / "models").symlink_to(root / "models")
    with pytest.raises(FileNotFoundError, match="prepare"):
        run_evaluation(fx.make_config(["ae"], SCALE, mlflow=False), tmp_path)


@pytest.mark.parametrize("kind", ["ae", "gan"])
def test_tiled_inference_matches_whole_image(kind, tmp_path):
    import torch

    from gensr.checkpoint import load_model

    net, _ = load_model(fx.write_model(tmp_path, kind, SCALE, kind=kind))
    lr = np.random.default_rng(0).random((45, 70, 3)).astype(np.float32)
    with torch.no_grad():
        whole = upscale(net, lr, SCALE, tile=0)
        tiled = upscale(net, lr, SCALE, tile=32, overlap=16)  # tiles of gensr.infer.tiling: > overlap + 8
    assert tiled.shape == whole.shape == (90, 140, 3)
    assert np.abs(tiled - whole).max() < 1e-5
