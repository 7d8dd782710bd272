"""MLflow end to end: a real `mlflow server` (SQLite backend) over HTTP; an unreachable server or a broken
SQLite store fails a stage at once; a run that fails ends FAILED."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gensr.errors import EXIT_USER_ERROR
from gensr.tracking import TrackingUnavailableError, check_store
from gensr.training.mlflow_logging import manifest_hash
from test_config_validation import RUN_STAGE
from train_fixtures import ROOT, run_train, tiny_overrides

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
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow 3's model-training kind
    assert run.data.params["variant"] == "vae" and run.data.params["model.losses.kl.weight"]
    assert run.data.params["datamodule.patch_size"] == "32"
    assert run.data.tags["stage"] == "train" and run.data.tags["variant"] == "vae"
    assert {"git_commit", "data_manifest_hash", "config_hash"} <= set(run.data.tags)
    # The prepared data is the run's dataset input (the UI's Dataset column), named by the manifests' hash.
    manifest = manifest_hash(project / "data" / "prepared")
    assert manifest != "none" and run.data.tags["data_manifest_hash"] == manifest
    (data,) = run.inputs.dataset_inputs
    assert (data.dataset.name, data.dataset.digest) == ("prepared-x2", manifest[:36])
    assert data.dataset.source_type == "local" and (project / "data" / "prepared").resolve().as_uri() in data.dataset.source
    assert [(t.key, t.value) for t in data.tags] == [("mlflow.data.context", "training")]
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
    assert proc.returncode == EXIT_USER_ERROR
    assert proc.stderr.startswith("error: MLflow tracking server http://127.0.0.1:9 is unreachable")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert elapsed < 30, f"took {elapsed:.0f} s"
    assert not (project / "models" / "ae").exists()


def _without_root_powers() -> list[str]:
    """Root writes read-only files anyway; drop its capabilities so permissions apply as for a user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


# (how the store is broken, what the one line must say)
STORE_FAULTS = {
    "corrupt": (lambda db: db.write_bytes(b"not an SQLite file " * 64), "is corrupt"),
    "read-only": (lambda db: (_sqlite_file(db), db.chmod(0o444)), "is read-only"),
    "unreadable": (lambda db: (_sqlite_file(db), db.chmod(0o000)), "is unreadable"),
}


def _sqlite_file(db: Path) -> None:
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (a)")
    con.commit()
    con.close()


@pytest.mark.parametrize("fault,script", [*((f, "train") for f in STORE_FAULTS), ("corrupt", "evaluate"),
                                          ("corrupt", "export")])
def test_broken_store_fails_before_any_work(project, fault, script):
    """A corrupt, read-only or unreadable mlflow.db: one line naming the store and what to do, in
    seconds, before torch is imported, with the database and the outputs left as they were."""
    db = project / "mlflow.db"
    STORE_FAULTS[fault][0](db)
    before = db.stat().st_mode, (db.read_bytes() if fault == "corrupt" else None)
    argv = tiny_overrides("ae") if script == "train" else []
    t0 = time.monotonic()
    proc = subprocess.run(
        [*_without_root_powers(), sys.executable, "-c", RUN_STAGE, str(ROOT / "pipelines" / f"{script}.py"), *argv],
        cwd=project, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert time.monotonic() - t0 < 30
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"error: MLflow store sqlite:///{db}") and STORE_FAULTS[fault][1] in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.strip() == "False"  # torch never imported: no work started
    assert not (project / "models" / "ae").exists() and not (project / "reports").exists()
    assert (db.stat().st_mode, db.read_bytes() if fault == "corrupt" else None) == before


def test_damaged_database_page_is_found(tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (a TEXT)")
    con.executemany("INSERT INTO t VALUES (?)", [("x" * 100,)] * 500)
    con.commit()
    con.close()
    check_store(f"sqlite:///{db}")  # sound
    with db.open("r+b") as f:  # one b-tree page overwritten in the middle of the file
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096)
    with pytest.raises(TrackingUnavailableError, match=r"is corrupt \(.*malformed.*\): move it aside"):
        check_store(f"sqlite:///{db}")


def test_store_of_a_writer_killed_mid_transaction_is_sound(tmp_path):
    """kill -9 of a stage while MLflow writes leaves a hot journal beside mlflow.db; the next run
    rolls it back and goes on (it was refused as "corrupt": the check opened the file read-only)."""
    import sqlite3

    db, journal = tmp_path / "mlflow.db", tmp_path / "mlflow.db-journal"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (a INTEGER)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    con.commit()
    con.close()
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, time\n"
        f"con = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "con.execute('PRAGMA cache_size=1'); con.execute('BEGIN')\n"
        "con.execute('UPDATE t SET a = a + 1'); con.execute('INSERT INTO t SELECT a FROM t')\n"
        "print('writing', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert journal.stat().st_size > 0  # the hot journal of the unfinished transaction
    check_store(f"sqlite:///{db}")
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*), SUM(a) FROM t").fetchone() == (1000, sum(range(1000)))  # rolled back
    con.close()


def test_run_is_failed_when_training_fails_after_fit(project):
    """Lightning ends the run FINISHED when fit returns; writing the outputs comes after and can
    still fail (here models/ae/model.pt is a folder): the run must read FAILED."""
    from gensr.config import compose
    from gensr.training.run import train

    (project / "models" / "ae" / "model.pt").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        train(compose(tiny_overrides("ae", steps=2, interval=2), root=project))
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("gensr").experiment_id])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("ae", "FAILED")]
    assert client.get_metric_history(runs[0].info.run_id, "val/psnr_y")  # it did train before failing
