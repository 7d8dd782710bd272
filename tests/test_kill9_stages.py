"""Kill -9 mid-run loses nothing: prepare, evaluate and export each run as their stage script in a
tiny project, are SIGKILLed (with their worker processes) once their partial output appears, and
then the previous finished outputs are byte-identical, and the next run completes and leaves no
scratch behind. (Training: tests/test_train_dvc.py; upscale: tests/test_upscale*.py.)"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import eval_fixtures as fx
from data_photos import ROOT, manifests, write_photos
from export_helpers import make_prepared, save_small_model
from gensr.config import load_stage_config, write_params
from gensr.io import OUTPUT_MARK


def _project(dest: Path, overrides: list[str]) -> Path:
    dest.mkdir(parents=True)
    shutil.copytree(ROOT / "conf", dest / "conf")
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    write_params(overrides, root=dest)
    return dest


def outputs(folder: Path) -> dict[str, bytes]:
    """The finished files below `folder`: hidden entries (staging, temp files) are scratch."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def scratch(folder: Path) -> list[str]:
    """Hidden entries left below `folder`, but for the mark a stage puts in the folders it wrote."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(".*") if p.name != OUTPUT_MARK)


def kill_when(script: str, argv: list[str], cwd: Path, ready: Callable[[], bool], timeout: float = 300) -> str:
    """Run pipelines/<script> in `cwd`; SIGKILL its whole process group as soon as `ready()`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "pipelines" / script), *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline and not ready():
            time.sleep(0.01)
        finished = proc.poll() is not None
        os.killpg(proc.pid, signal.SIGKILL)  # the stage and its workers: no cleanup runs anywhere
    except ProcessLookupError:
        finished = True
    out = proc.communicate(timeout=60)[0]
    assert not finished and proc.returncode == -signal.SIGKILL, f"{script} was not killed mid-run:\n{out}"
    return out


def test_prepare(tmp_path, caplog):
    photos = tmp_path / "photos"
    write_photos(photos, 40, h=96, w=128)
    photos_before = outputs(photos)
    proj = _project(tmp_path / "proj", ["data=folder", f"data.folder={photos}", "data.min_side=16",
                                        "data.workers=2"])
    from gensr.data.prepare import prepare

    prepare(load_stage_config(["data.workers=1"], root=proj), proj)  # the previous finished result
    data = proj / "data"
    before = outputs(data / "prepared")

    records = data / ".prepared.partial" / "records"
    kill_when("prepare.py", ["degradation.scale=4"], proj,
              lambda: records.is_dir() and len(list(records.glob("*.json"))) >= 3)
    assert outputs(data / "prepared") == before  # the x2 result, whole; the x4 one is in staging
    done = len(list(records.glob("*.json")))
    print(f"killed with {done} of 40 pairs made")
    assert 3 <= done < 40

    with caplog.at_level(logging.INFO, logger="gensr.prepare"):
        prepare(load_stage_config(["degradation.scale=4", "data.workers=1"], root=proj), proj)
    assert any("resuming" in r.getMessage() for r in caplog.records)
    m = manifests(data / "prepared")
    assert m["train"]["scale"] == 4 and sum(m["train"]["counts"].values()) == 40
    assert all(Image.open(data / "prepared" / r["lr"]).size == (32, 24) for s in m.values() for r in s["images"])
    assert scratch(data) == [] and outputs(photos) == photos_before


def _eval_project(root: Path) -> Path:
    proj = _project(root, ["variants=[ae]", "evaluate.mlflow=false", "~evaluate.benchmarks.set5",
                           "evaluate.device=cpu", "evaluate.threads=1"])
    prepared = proj / "data" / "prepared"
    fx.write_split(prepared, 2)
    from gensr.evaluate.sets import bicubic_degrade

    for i in range(24):  # enough images that the kill lands while pictures are being made
        hr = fx.photo(["astronaut", "coffee", "chelsea", "rocket"][i % 4], 48 + 2 * i, 64)
        lr = (bicubic_degrade(hr.astype(np.float32) / 255.0, 2) * 255.0).round().astype(np.uint8)
        for kind, arr in (("hr", hr), ("lr", lr)):
            Image.fromarray(arr).save(prepared / "test" / kind / f"extra{i:02d}.png")
    fx.write_model(proj / "models", "ae", 2)
    return proj


def test_evaluate(tmp_path):
    from gensr.evaluate.stage import run_evaluation

    proj = _eval_project(tmp_path / "proj")
    run_evaluation(load_stage_config([], root=proj), proj)  # the previous finished report
    reports = proj / "reports"
    before = outputs(reports)
    assert "index.html" in before and "comparisons/test/extra23.png" in before

    kill_when("evaluate.py", ["evaluate.crop_size=32"], proj,
              lambda: any(p.is_file() for p in reports.glob(".comparisons.*/*/*.png")))
    assert outputs(reports) == before

    run_evaluation(load_stage_config(["evaluate.crop_size=32"], root=proj), proj)
    after = outputs(reports)
    assert after.keys() == before.keys() and after["comparisons/test/extra00.png"] != before["comparisons/test/extra00.png"]
    assert scratch(reports) == []  # the killed run's picture folder is gone


EXPORT_FAST = ["variants=[ae,gan]", "export.register=false", "export.speed.shape=[1,32,32]",
               "export.speed.warmup=1", "export.speed.repeats=2", "export.calibration.patches=8",
               "export.calibration.patch_size=16", "export.tiling_check.tile=16", "export.tiling_check.overlap=4",
               "export.parity_shapes=[[17,23]]", "export.parity_batches=[1]"]


def test_export(tmp_path):
    from gensr.export.stage import run_stage

    proj = _project(tmp_path / "proj", EXPORT_FAST)
    make_prepared(proj)
    for i, v in enumerate(("ae", "gan")):  # two variants: the kill lands while the second is exported
        save_small_model(proj, v, seed=i)
    exports = proj / "exports"
    # A previous run's files (made up: an export costs seconds per variant), and a dropped variant.
    for rel in ("models/ae/model.onnx", "models/ae/model.int8.onnx", "models/gan/model.onnx",
                "models/old/model.onnx", "validation.json"):
        (exports / rel).parent.mkdir(parents=True, exist_ok=True)
        (exports / rel).write_bytes(f"previous {rel}".encode())
    (exports / "models" / OUTPUT_MARK).write_text("")  # as the export stage marks what it writes
    before = outputs(exports)

    kill_when("export.py", [], proj, lambda: (exports / ".models.partial" / "ae" / "model.onnx").is_file())
    assert outputs(exports) == before  # nothing of the new models is in place before all are done

    report = run_stage(load_stage_config([], root=proj), proj)
    after = outputs(exports)
    on_disk = json.loads(after["validation.json"])
    for v in ("ae", "gan"):
        assert on_disk["variants"][v]["sha256"] == hashlib.sha256(after[f"models/{v}/model.onnx"]).hexdigest()
    assert not any(k.startswith("models/old/") for k in after)  # the exported set is this run's, whole
    assert report["variants"].keys() == {"ae", "gan"} and scratch(exports) == []
