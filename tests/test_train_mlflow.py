"""MLflow end to end: a real `mlflow server` (SQLite backend) over HTTP, and an unreachable one."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from train_fixtures import project, project_template, run_train, tiny_overrides  # noqa: F401

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start (exit code {proc.poll()})")
            time.sleep(0.5)
        yield uri
    finally:
        # Stop it by its PID (its own session: the server and the workers it spawned).
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_training_logs_to_mlflow_server(project, mlflow_server):
    proc = run_train(project, tiny_overrides("vae", steps=4, interval=2), env={"MLFLOW_TRACKING_URI": mlflow_server})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (project / "mlflow.db").exists()  # nothing went to the local SQLite file
    run_id = json.loads((project / "models" / "vae" / "metrics.json").read_text())["mlflow_run_id"]

    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    assert run.info.run_name == "vae" and run.info.status == "FINISHED"
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "gensr"
    assert run.data.params["variant"] == "vae" and run.data.params["model.losses.kl.weight"]
    assert run.data.params["datamodule.patch_size"] == "32"
    assert run.data.tags["stage"] == "train" and run.data.tags["variant"] == "vae"
    assert {"git_commit", "data_manifest_hash", "config_hash"} <= set(run.data.tags)
    for key in ("train/l1", "train/kl", "train/loss", "lr-net"):
        assert client.get_metric_history(run_id, key), key
    psnr = client.get_metric_history(run_id, "val/psnr_y")
    assert [m.step for m in psnr] == [2, 4]
    assert "val/bicubic_psnr_y" in run.data.metrics and "val/ssim_y" in run.data.metrics
    images = [a.path for a in client.list_artifacts(run_id, "val_images")]
    assert images == ["val_images/step_000002.png", "val_images/step_000004.png"]
    local = client.download_artifacts(run_id, images[-1], str(project))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "model", "checkpoints", "metrics", "history", "val_images"} <= names


def test_unreachable_server_fails_fast(project):
    t0 = time.monotonic()
    proc = run_train(project, tiny_overrides("ae"), env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in proc.stderr
    assert elapsed < 30, f"took {elapsed:.0f} s"
    assert not (project / "models" / "ae").exists()
