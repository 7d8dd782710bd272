"""MLflow connection and run conventions shared by train, evaluate and export.

Default: SQLite at the checkout root (`gensr.config.tracking_uri`); MLFLOW_TRACKING_URI selects a
server. `check_store` runs in each stage script before torch is imported: an unreachable server, or
a database file that is corrupt, unreadable or read-only, fails the stage in seconds with one line
saying what to do, instead of MLflow's retry loop or a SQLAlchemy traceback after the work is done.

Conventions: every experiment gensr uses is tagged as MLflow 3's model-training kind; a run's tags
`stage` and `variant` say which stage opened it and for which variant (`run_tags`). A variant's
figures go onto its training run, found by the id saved with the model (`find_run`); when that run
is not in this store, evaluate and export open one named after the variant (`variant_run`).
"""
from __future__ import annotations

import os
import sqlite3
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gensr.config import main_repo_root, tracking_uri
from gensr.errors import UserError

_ELSEWHERE = "or set MLFLOW_TRACKING_URI to another tracking store"
# MLflow 3's experiment kinds: "custom_model_development" is model training (not GenAI tracing);
# the UI shows the training views (runs, metrics, datasets) for it.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
# A run opened by evaluate or export because the variant's training run is not in this store.
UNTRAINED_TAG = "gensr.evaluation_only"


class TrackingUnavailableError(UserError, RuntimeError):
    pass


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Raise TrackingUnavailableError unless an http(s) tracking server answers /health in time."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            if resp.status != 200:
                raise TrackingUnavailableError(f"MLflow server {uri} answered {resp.status} on /health")
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} is unreachable ({e}). Start it, fix "
            "MLFLOW_TRACKING_URI, or unset it to use the local SQLite database."
        ) from e


def check_sqlite(uri: str, timeout_s: float = 10.0) -> None:
    """Raise TrackingUnavailableError unless a sqlite:/// store can be read and written."""
    path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
    if path is None or str(path) in ("", ":memory:"):
        return
    if not path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise TrackingUnavailableError(
                f"MLflow store {uri}: cannot create it, {path.parent} is not writable; fix its permissions "
                f"{_ELSEWHERE}")
        return
    if not path.is_file():
        raise TrackingUnavailableError(f"MLflow store {uri} is not a file; move it away {_ELSEWHERE}")
    if not os.access(path, os.R_OK):
        raise TrackingUnavailableError(
            f"MLflow store {uri} is unreadable (permission denied): `chmod u+rw {path}` {_ELSEWHERE}")
    # SQLite writes a journal beside the database, so its folder must be writable too.
    for what, p in (("the file", path), ("its folder", path.parent)):
        if not os.access(p, os.W_OK):
            raise TrackingUnavailableError(
                f"MLflow store {uri} is read-only ({what} is not writable): make {p} writable {_ELSEWHERE}")
    try:
        # Read-write, not read-only: a writer killed mid-transaction (kill -9 of a stage) leaves a
        # hot journal that SQLite rolls back on the next writable open; read-only it fails with
        # "attempt to write a readonly database", which is not a corrupt store.
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout_s)
        try:
            verdict = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if "locked" in str(e):  # busy with another stage's writes: not a fault
            return
        verdict = str(e)
    if verdict != "ok":
        raise TrackingUnavailableError(
            f"MLflow store {uri} is corrupt ({verdict}): move it aside (`mv {path} {path}.corrupt`) to start "
            f"a new one, restore it from a backup, {_ELSEWHERE}")


def check_store(uri: str, timeout_s: float = 10.0) -> None:
    """The tracking store `uri` can take a run: a server answers, or a SQLite file is sound and writable."""
    check_reachable(uri, timeout_s)
    check_sqlite(uri, timeout_s)


def configure(experiment: str, root: Path | None = None, timeout_s: float = 10.0) -> str:
    """Point MLflow at the project's tracking store and return the experiment id."""
    import mlflow

    uri = tracking_uri(root)
    check_store(uri, timeout_s)
    # Bound MLflow's own HTTP retries too, so a server dying mid-run cannot hang a stage for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(timeout_s, 5))))
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None and uri.startswith("sqlite:"):
        # MLflow's default artifact root is ./mlruns of the *current* folder; queued experiments
        # run in temporary copies, so pin artifacts beside the shared database instead.
        artifacts = (main_repo_root(root) / "mlruns" / experiment).as_uri()
        try:
            mlflow.create_experiment(experiment, artifact_location=artifacts)
        except mlflow.exceptions.MlflowException:
            pass  # created meanwhile by a parallel stage
    exp = mlflow.set_experiment(experiment)
    if exp.tags.get(KIND_TAG) != KIND:
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
    return exp.experiment_id


def run_tags(stage: str, variant: str | None = None) -> dict[str, str]:
    """The tags that say what a run is: the stage that opened it and the variant it belongs to."""
    return {"stage": stage, **({"variant": variant} if variant else {})}


def find_run(client: Any, run_id: str | None) -> Any | None:
    """The run `run_id` names when this tracking store holds it (and it is not deleted), else None."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run


@dataclass(frozen=True)
class VariantRun:
    run_id: str
    created: bool     # opened here: the stage that opened it ends it
    why: str | None   # why no training run was found (None when it was)


def variant_run(client: Any, experiment_id: str, variant: str, run_id: str | None, stage: str) -> VariantRun:
    """The variant's training run when this store holds it; else a new run named after the variant,
    tagged `run_tags(stage, variant)` and `gensr.evaluation_only=true` (no training behind it)."""
    if find_run(client, run_id) is not None:
        return VariantRun(str(run_id), False, None)
    why = (f"training run {run_id} is not in this tracking store" if run_id else
           "model file has no MLflow run id (trained without tracking)")
    tags = {**run_tags(stage, variant), UNTRAINED_TAG: "true"}
    run = client.create_run(experiment_id, run_name=variant, tags=tags)
    return VariantRun(run.info.run_id, True, why)
