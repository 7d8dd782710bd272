"""DVC integration: queued experiments land in the checkout's MLflow database; a SIGKILLed
training is resumed by the next `dvc repro`. The real-DVC tests are slow (they run the prepare
stage and several trainings in a git repo); the fast test covers the path mapping they rely on."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from gensr.training.mlflow_logging import prepare_tracking
from train_fixtures import ROOT

BIN = Path(sys.executable).parent
TINY_PROFILE = """# @package _global_
datamodule: {patch_size: 32, batch_size: 4, num_workers: 0, val_max_side: 48}
trainer: {max_steps: 4, val_check_interval: 2, log_every_n_steps: 1, threads: 1}
models:
  ae: {net: {features: 8, latent: 8, depth: 1}}
"""


def test_queued_experiment_copy_logs_into_the_checkout(tmp_path, monkeypatch):
    """From inside .dvc/tmp/exps/<copy>, the experiment (and its artifact store) is the checkout's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "run" / "abc123"
    copy.mkdir(parents=True)
    uri = prepare_tracking("gensr", 5, root=copy)
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = MlflowClient(uri).get_experiment_by_name("gensr")
    assert exp.artifact_location == (tmp_path / "mlruns" / "gensr").as_uri()
    assert not (copy / "mlflow.db").exists()


def _dvc_project(dest: Path) -> Path:
    """A git + DVC checkout of the project with a tiny training profile."""
    dest.mkdir()
    for item in ("conf", "src", "pipelines", ".dvc"):
        shutil.copytree(ROOT / item, dest / item, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    for item in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / item, dest / item)
    (dest / "conf" / "profile" / "quick.yaml").write_text(TINY_PROFILE)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([str(BIN / "gensr"), "params"], cwd=dest, check=True, env=env, capture_output=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=dest, check=True)
    return dest


def _run(cmd, cwd, timeout=600, check=True):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_dvc_queue_sweep_lands_in_one_database(tmp_path):
    proj = _dvc_project(tmp_path / "repo")
    _run(["dvc", "repro", "train@ae"], proj)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    _run([*git, "add", "-A"], proj)
    _run([*git, "commit", "-qm", "baseline"], proj)
    _run(["dvc", "exp", "run", "--queue", "-S", "models.ae.optim.optimizer.lr=1e-3,3e-3", "train@ae"], proj)
    _run(["dvc", "queue", "start"], proj)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], proj).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Failed" not in status, status + _run(["dvc", "queue", "logs", "--help"], proj, check=False).stdout
    client = MlflowClient(f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("gensr")
    runs = client.search_runs([exp.experiment_id])
    lrs = sorted(float(r.data.params["model.optim.optimizer.lr"]) for r in runs if r.info.run_name == "ae")
    assert lrs == [1e-3, 1e-3, 3e-3], lrs  # the baseline and the two queued experiments
    assert exp.artifact_location == (proj / "mlruns" / "gensr").as_uri()
    assert not list((proj / ".dvc" / "tmp").rglob("mlflow.db"))


def test_sigkilled_training_resumes_on_next_repro(tmp_path):  # issue 10: kill -9 train, lose nothing
    proj = _dvc_project(tmp_path / "repo")
    profile = proj / "conf" / "profile" / "quick.yaml"
    profile.write_text(TINY_PROFILE.replace("max_steps: 4", "max_steps: 60"))
    _run([str(BIN / "gensr"), "params"], proj)
    last = proj / "checkpoints" / "ae" / "last.ckpt"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    dvc = subprocess.Popen(["dvc", "repro", "train@ae"], cwd=proj, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    import torch

    killed_at = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and dvc.poll() is None:
        if last.is_file():
            step = torch.load(last, weights_only=True)["gensr"]["iteration"]
            if step >= 4:
                trainers = [p for p in psutil.Process(dvc.pid).children(recursive=True)
                            if "pipelines/train.py" in " ".join(p.cmdline())]
                assert trainers, "train.py not found under dvc"
                for p in trainers:
                    p.send_signal(9)  # SIGKILL: no cleanup, no final checkpoint
                killed_at = step
                break
        time.sleep(0.2)
    out = dvc.communicate(timeout=120)[0]
    assert killed_at is not None, out
    assert dvc.returncode != 0  # DVC saw the stage die
    assert not (proj / "models" / "ae" / "model.pt").exists()
    proc = _run(["dvc", "repro", "train@ae"], proj)
    assert "resuming" in proc.stdout and "last.ckpt at step" in proc.stdout, proc.stdout
    metrics = json.loads((proj / "models" / "ae" / "metrics.json").read_text())
    assert metrics["steps"] == 60
