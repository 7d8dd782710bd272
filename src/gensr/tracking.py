"""MLflow connection shared by train, evaluate and export.

Default: SQLite at the checkout root (`gensr.config.tracking_uri`); MLFLOW_TRACKING_URI selects a
server. An unreachable server fails fast with a message instead of MLflow's long retry loop.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from gensr.config import main_repo_root, tracking_uri


class TrackingUnavailableError(RuntimeError):
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


def configure(experiment: str, root: Path | None = None, timeout_s: float = 10.0) -> str:
    """Point MLflow at the project's tracking store and return the experiment id."""
    import mlflow

    uri = tracking_uri(root)
    check_reachable(uri, timeout_s)
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
    return exp.experiment_id
