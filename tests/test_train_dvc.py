"""DVC integration: queued experiments land in the checkout's MLflow database; a SIGKILLed
training is resumed by the next `dvc repro`. The real-DVC tests are slow (they run the prepare
stage and several trainings in a git repo); the fast test covers the path mapping they rely on."""
from __future__ import annotations

import json
import os
import subprocess
import time

import psutil
import pytest
from mlflow.tracking import MlflowClient

from gensr.training.mlflow_logging import prepare_tracking
from train_fixtures import BIN, TINY_PROFILE, dvc_project, run_cmd

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


@pytest.mark.slow
def test_dvc_queue_sweep_lands_in_one_database(tmp_path):
    proj = dvc_project(tmp_path / "repo")
    run_cmd(["dvc", "repro", "train@ae"], proj)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    run_cmd([*git, "add", "-A"], proj)
    run_cmd([*git, "commit", "-qm", "baseline"], proj)
    run_cmd(["dvc", "exp", "run", "--queue", "-S", "models.ae.optim.optimizer.lr=1e-3,3e-3", "train@ae"], proj)
    run_cmd(["dvc", "queue", "start"], proj)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run_cmd(["dvc", "queue", "status"], proj).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Failed" not in status, status + run_cmd(["dvc", "queue", "logs", "--help"], proj, check=False).stdout
    client = MlflowClient(f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("gensr")
    runs = client.search_runs([exp.experiment_id])
    lrs = sorted(float(r.data.params["model.optim.optimizer.lr"]) for r in runs if r.info.run_name == "ae")
    assert lrs == [1e-3, 1e-3, 3e-3], lrs  # the baseline and the two queued experiments
    assert exp.artifact_location == (proj / "mlruns" / "gensr").as_uri()
    assert not list((proj / ".dvc" / "tmp").rglob("mlflow.db"))


def test_sigkilled_training_resumes_on_next_repro(tmp_path):  # issue 10: kill -9 train, lose nothing
    proj = dvc_project(tmp_path / "repo")
    profile = proj / "conf" / "profile" / "quick.yaml"
    profile.write_text(TINY_PROFILE.replace("max_steps: 4", "max_steps: 60"))
    run_cmd([str(BIN / "gensr"), "params"], proj)
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
    proc = run_cmd(["dvc", "repro", "train@ae"], proj)
    assert "resuming" in proc.stdout and "last.ckpt at step" in proc.stdout, proc.stdout
    metrics = json.loads((proj / "models" / "ae" / "metrics.json").read_text())
    assert metrics["steps"] == 60
