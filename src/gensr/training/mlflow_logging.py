"""MLflow for training: one experiment (`logger.experiment`), one run per variant (run name = the
variant), through Lightning's MLFlowLogger so DDP logs from rank 0 only.

The run gets: the resolved config flattened as params (+ the whole YAML as `config.yaml`, since
MLflow truncates long values), tags (`gensr.tracking.run_tags`: stage=train and the variant; git
commit, data manifest hash, config hash), the prepared data as its dataset input (the UI's Dataset
column), every loss term per step, val PSNR/SSIM-Y and LR, image grids, the best checkpoint,
model.pt, and where the wall time went (timing/* metrics, timings.json). Its id is written into
model.pt and metrics.json so evaluate/export log onto it.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L

from gensr.config import tracking_uri
from gensr.tracking import configure, find_run


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def manifest_hash(prepared: Path) -> str:
    """sha256 over the prepare stage's manifests (data/prepared/*.json): the data's identity."""
    h = hashlib.sha256()
    files = sorted(Path(prepared).glob("*.json"))
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest() if files else "none"


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def prepare_tracking(experiment: str, timeout_s: float, root: Path | None = None) -> str:
    """Fail fast on an unreachable server and create the experiment with its artifacts beside the
    checkout's SQLite database, never inside a queued experiment's temporary copy (gensr.tracking).
    Returns the tracking URI."""
    configure(experiment, root, timeout_s)
    return tracking_uri(root)


def existing_run(uri: str, run_id: str | None) -> str | None:
    """run_id if that run exists in this tracking store (a resumed run continues it), else None."""
    from mlflow.tracking import MlflowClient

    if run_id and find_run(MlflowClient(uri), run_id) is None:
        print(f"note: MLflow run {run_id} of the checkpoint is not in {uri}; logging to a new run")
        return None
    return run_id or None


@dataclass(frozen=True)
class PreparedData:
    """The prepare stage's output a run trains on, logged as the run's MLflow dataset input."""

    path: Path
    scale: int
    manifest_hash: str

    def log_to(self, client, run_id: str) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        # MLflow's digest column holds 36 characters: the manifest hash's first 36 hex digits.
        data = Dataset(name=f"prepared-x{self.scale}", digest=self.manifest_hash[:36], source_type="local",
                       source=json.dumps({"uri": Path(self.path).resolve().as_uri()}))
        client.log_inputs(run_id, datasets=[DatasetInput(data, [InputTag(MLFLOW_DATASET_CONTEXT, "training")])])


def make_logger(uri: str, experiment: str, variant: str, run_id: str | None, tags: Mapping[str, str]):
    from lightning.pytorch.loggers import MLFlowLogger

    class IterationLogger(MLFlowLogger):
        """Metric steps = training iterations completed, as in history.csv: Lightning logs a
        batch's metrics (and the validation after it) before counting that batch."""

        def log_metrics(self, metrics, step=None):
            super().log_metrics(metrics, None if step is None else step + 1)

        def finalize(self, status: str = "success") -> None:
            # Lightning says "success" as soon as fit returns, before train() has written and logged
            # the outputs: `ends_run` closes the run then. Failures inside fit still end it here.
            if status != "success":
                super().finalize(status)

        def close(self, status: str) -> None:
            super().finalize(status)

    return IterationLogger(
        experiment_name=experiment, run_name=variant, tracking_uri=uri, tags=dict(tags), run_id=run_id
    )


class RunSetup(L.Callback):
    """At fit start on rank 0: params, tags, the YAML config and the dataset input onto the run
    (also on a resume, with identical values, which MLflow accepts)."""

    def __init__(self, params: Mapping[str, Any], tags: Mapping[str, str], config_yaml: str,
                 data: PreparedData | None = None):
        self.params, self.tags, self.config_yaml, self.data = dict(params), dict(tags), config_yaml, data

    def on_fit_start(self, trainer, pl_module) -> None:
        logger = trainer.logger
        if not trainer.is_global_zero or logger is None or not hasattr(logger, "run_id"):
            return
        from mlflow.entities import Param, RunTag

        client, run_id = logger.experiment, logger.run_id
        client.update_run(run_id, status="RUNNING")  # a resumed (killed) run is live again
        params = [Param(k, str(v)[:500]) for k, v in sorted(self.params.items())]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in self.tags.items()])
        client.log_text(run_id, self.config_yaml, "config.yaml")
        if self.data is not None:
            self.data.log_to(client, run_id)


@contextmanager
def ends_run(logger) -> Iterator[None]:
    """The run ends FINISHED only when the block completes; FAILED on an error (KILLED on Ctrl-C),
    also after fit, so a run whose outputs were never written never reads FINISHED."""
    try:
        yield
    except BaseException as e:
        if logger is not None:
            try:
                logger.close("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            except Exception as close_error:  # the original error matters more than the status
                print(f"note: could not mark the MLflow run failed ({close_error})", flush=True)
        raise
    if logger is not None:
        logger.close("success")


def log_outputs(logger, files: Mapping[str, Path], metrics: Mapping[str, float], step: int,
                named: Mapping[str, float] | None = None) -> None:
    """After training (rank 0): final metrics (as final/<name>), metrics `named` in full (timing/...)
    and the output files as artifacts."""
    if logger is None or not hasattr(logger, "run_id"):
        return
    from mlflow.entities import Metric

    client, run_id = logger.experiment, logger.run_id
    now = int(time.time() * 1000)
    values = {**{f"final/{k}": v for k, v in metrics.items()}, **(named or {})}
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])
    for artifact_dir, path in files.items():
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_dir)
