"""The export stage end to end on a tiny project: validation report, shipping rules, MLflow registry."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from export_helpers import make_prepared, save_small_model, save_vae_res

from gensr.config import compose
from gensr.infer import session as runtime
from gensr.export.stage import ExportValidationError, run_stage
from gensr.export.validate import to_nchw
from gensr.io import read_image

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["ae", "vae"]  # a small ConvAutoencoder as "ae"; a tiny trained variational ae_res as "vae"
FAST = [
    f"variants=[{','.join(VARIANTS)}]",
    "export.speed.shape=[1,32,32]", "export.speed.warmup=1", "export.speed.repeats=2",
    "export.calibration.patches=8", "export.calibration.patch_size=16",
    "export.tiling_check.tile=16", "export.tiling_check.overlap=4",
]


@pytest.fixture(scope="module")
def export_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    make_prepared(root)
    save_small_model(root, "ae")
    save_vae_res(root, "vae")
    (root / "reports").mkdir()
    perceptual = {"variant": "vae", "psnr_y": 29.0, "set": "test"}
    (root / "reports" / "champion.json").write_text(
        json.dumps({"variant": "ae", "psnr_y": 30.0, "set": "test", "perceptual": perceptual}))
    # A stale int8 file from an earlier run must disappear when int8 is rejected now.
    stale = root / "exports" / "models" / "ae" / "model.int8.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    return root


@pytest.fixture(scope="module")
def export_report(export_project):
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{export_project / 'mlflow.db'}")
    # fp16 forced to ship and int8 forced to be rejected, so both branches of the rule run; the
    # sampler forced to ship (its rule against bicubic is tested in test_vae_sampling).
    cfg = compose([*FAST, "export.fp16_max_psnr_drop_db=100", "export.int8_max_psnr_drop_db=-100",
                   "export.sampler.min_margin_db=-100"], root=ROOT)
    try:
        yield run_stage(cfg, export_project), export_project
    finally:
        mp.undo()


def test_report_records_parity_speed_and_providers(export_report):
    report, root = export_report
    on_disk = json.loads((root / "exports" / "validation.json").read_text(), parse_constant=pytest.fail)
    assert on_disk["variants"].keys() == set(VARIANTS)
    for v in VARIANTS:
        entry = on_disk["variants"][v]
        assert entry["shipped"] and entry["providers"] == ["CPUExecutionProvider"]
        cases = entry["parity"]["cases"]
        # 4 shapes x batch 1 and 2, plus each test image at full size.
        assert {"random_b1_17x23", "random_b2_256x384", "test_img0", "test_img1"} <= cases.keys()
        assert len(cases) == 4 * 2 + 2
        assert all(c["max_abs_diff"] <= 1e-4 and c["passed"] for c in cases.values())
        assert cases["random_b2_123x77"]["shape"] == [2, 3, 123, 77]
        speed = entry["speed"]
        assert speed["onnxruntime"]["latency_ms"] > 0 and speed["torch_eager"]["mpix_per_s"] > 0
        assert entry["psnr_y"] == pytest.approx(entry["psnr_y_torch"], abs=1e-3)
        assert 0 <= entry["tiling_max_diff_8bit"] < 255  # measured; the seam itself is tested in test_upscale


def test_lighter_models_follow_the_psnr_rule(export_report):
    report, root = export_report
    folder = root / "exports" / "models" / "ae"
    fp16, int8 = report["variants"]["ae"]["fp16"], report["variants"]["ae"]["int8"]
    assert fp16["shipped"] and (folder / "model.fp16.onnx").is_file()
    assert np.isfinite(fp16["psnr_y_drop_db"]) and fp16["speed"]["latency_ms"] > 0
    assert not int8["shipped"] and "PSNR-Y drop" in int8["rejected"]
    assert not (folder / "model.int8.onnx").exists()  # rejected: not shipped, stale file removed
    assert np.isfinite(int8["psnr_y_drop_db"]) and int8["speed"]["mpix_per_s"] > 0
    meta = runtime.read_metadata(runtime.make_session(folder / "model.fp16.onnx", ["CPUExecutionProvider"]))
    assert meta["precision"] == "fp16" and meta["scale"] == 2
    onnx.checker.check_model(onnx.load(folder / "model.onnx"), full_check=True)


def test_registry_round_trip_loads_the_champion(export_report):
    import mlflow
    from mlflow import MlflowClient

    from gensr.export import registry

    report, root = export_report
    uri = report["registry"]["champion_uri"]
    assert uri == "models:/gensr-x2-ae@champion"
    assert report["registry"]["champion_perceptual_uri"] == "models:/gensr-x2-vae@champion-perceptual"
    lr = read_image(root / "data" / "prepared" / "test" / "lr" / "img0.png")
    shipped_path = root / "exports" / "models" / "ae" / "model.onnx"
    expected = runtime.run(runtime.make_session(shipped_path, ["CPUExecutionProvider"]), to_nchw(lr))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    try:
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        loaded = mlflow.onnx.load_model(uri)
        session = runtime.make_session(loaded.SerializeToString(), ["CPUExecutionProvider"])
        assert runtime.read_metadata(session)["variant"] == "ae"
        np.testing.assert_array_equal(runtime.run(session, to_nchw(lr)), expected)
        predicted = mlflow.pyfunc.load_model(uri).predict(to_nchw(lr))
        np.testing.assert_allclose(np.asarray(predicted["sr"]), expected, atol=1e-6)
        client = MlflowClient()
        run_id = report["registry"]["models"]["ae"]["run_id"]
        assert report["registry"]["models"]["ae"]["new_run"]  # model.pt had no run id: run named "ae"
        assert client.get_run(run_id).info.run_name == "ae"
        assert client.get_run(run_id).data.metrics["export/parity_max_abs_diff"] <= 1e-4
        vae = report["registry"]["models"]["vae"]
        assert str(client.get_model_version_by_alias("gensr-x2-vae", "champion-perceptual").version) == vae["version"]
        assert "champion-perceptual" not in client.get_registered_model("gensr-x2-ae").aliases
        logged = [a.path for a in client.list_artifacts(vae["run_id"], "onnx_exports")]
        assert "onnx_exports/model.sample.onnx" in logged  # the sampler travels with the vae's model
        # A new champion of the same scale takes the alias away from the old one.
        exp_id = client.get_experiment_by_name("gensr").experiment_id
        other = registry.log_and_register(shipped_path, {"variant": "gan", "scale": 2, "channels": 3}, exp_id)
        assert registry.set_champion(2, "gan", other["version"], VARIANTS + ["gan"]) == "models:/gensr-x2-gan@champion"
        assert "champion" not in client.get_registered_model("gensr-x2-ae").aliases
        assert str(client.get_model_version_by_alias("gensr-x2-gan", "champion").version) == other["version"]
        assert "champion-perceptual" in client.get_registered_model("gensr-x2-vae").aliases  # untouched
    finally:
        mp.undo()


def test_variational_variant_also_ships_a_validated_sampler(export_report):
    report, root = export_report
    on_disk = json.loads((root / "exports" / "validation.json").read_text())
    entry = on_disk["variants"]["vae"]["sampler"]
    path = root / "exports" / "models" / "vae" / "model.sample.onnx"
    assert entry["shipped"] and entry["path"] == str(path.relative_to(root))
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["size_bytes"] == path.stat().st_size
    assert entry["providers"] == ["CPUExecutionProvider"] and entry["noise_shape"] == "[N, 4, ceil(H/2), ceil(W/2)]"
    cases = entry["parity"]["cases"]  # same shapes, batches and bound as the deterministic graph
    assert entry["parity"]["passed"] and cases.keys() == on_disk["variants"]["vae"]["parity"]["cases"].keys()
    assert all(c["max_abs_diff"] <= 1e-4 for c in cases.values())
    quality = entry["quality"]
    assert quality["samples_per_image"] == 4 and quality["per_image"].keys() == {"img0", "img1"}
    assert all(len(set(v["samples"])) == 4 for v in quality["per_image"].values())  # seeded samples differ
    assert np.isfinite(quality["psnr_y"]) and np.isfinite(quality["bicubic_psnr_y"])
    meta = runtime.read_metadata(runtime.make_session(path, ["CPUExecutionProvider"]), str(path), sampler=True)
    assert meta["kind"] == "sampler" and meta["variant"] == "vae" and meta["noise_stride"] == 2
    deterministic = root / "exports" / "models" / "vae" / "model.onnx"  # the mu graph is still model.onnx
    assert runtime.read_metadata(runtime.make_session(deterministic, ["CPUExecutionProvider"]))["kind"] == "sr"
    assert "sampler" not in on_disk["variants"]["ae"]
    assert not (root / "exports" / "models" / "ae" / "model.sample.onnx").exists()


def test_perceptual_alias_tolerates_older_and_empty_champion_files(export_report, caplog):
    from mlflow import MlflowClient

    from gensr.export import registry
    from gensr.export.stage import _aliases

    report, root = export_report
    out = {"models": report["registry"]["models"]}
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    try:
        client = MlflowClient()
        # champion.json from before the perceptual pick: fidelity alias set, perceptual left alone.
        _aliases(registry, out, {"variant": "ae", "psnr_y": 30.0, "set": "test"}, 2, VARIANTS, "reports/champion.json")
        assert "no 'perceptual' entry" in out["champion_perceptual_note"] and "champion_perceptual_uri" not in out
        assert "no 'perceptual' entry" in caplog.text
        assert "champion-perceptual" in client.get_registered_model("gensr-x2-vae").aliases
        # No model qualified as perceptual champion: a previous holder loses the alias.
        out = {"models": report["registry"]["models"]}
        _aliases(registry, out, {"variant": "ae", "perceptual": None}, 2, VARIANTS, "reports/champion.json")
        assert "removed" in out["champion_perceptual_note"]
        assert "champion-perceptual" not in client.get_registered_model("gensr-x2-vae").aliases
        assert out["champion_uri"] == "models:/gensr-x2-ae@champion"
    finally:
        mp.undo()


def test_parity_failure_ships_nothing_and_names_shape_and_difference(export_project, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(export_project / "data", root / "data")
    shutil.copytree(export_project / "models" / "ae", root / "models" / "ae")
    (root / "exports" / "models" / "ae").mkdir(parents=True)
    (root / "exports" / "models" / "ae" / "model.onnx").write_bytes(b"stale")
    # A negative bound no real difference can meet: exercises the failure path of the stage.
    cfg = compose([*FAST, "variants=[ae]", "export.max_abs_diff=-1", "export.register=false",
                   "export.parity_shapes=[[17,23]]", "export.parity_batches=[1]"], root=ROOT)
    with pytest.raises(ExportValidationError) as err:
        run_stage(cfg, root)
    assert "variant ae" in str(err.value) and "[1, 3, 17, 23]" in str(err.value)
    assert "max |ORT - torch| =" in str(err.value)
    assert not (root / "exports" / "models" / "ae" / "model.onnx").exists()
    report = json.loads((root / "exports" / "validation.json").read_text())
    assert report["variants"]["ae"]["shipped"] is False and "registry" not in report
