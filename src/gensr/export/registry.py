"""MLflow: log each shipped ONNX model to its training run, register it, alias the champion.

Registered name: `gensr-x{scale}-{variant}`. The evaluate stage's best variant by fidelity gets the
alias `champion`, so production loads `models:/gensr-x2-<variant>@champion`, and its perceptual
champion (best texture among the models clearly above bicubic) `champion-perceptual`; each alias
is removed from the other variants' registered models, so one model of a scale holds it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from gensr.infer.session import INPUT_NAME, OUTPUT_NAME
from gensr.tracking import variant_run

CHAMPION_ALIAS = "champion"
PERCEPTUAL_ALIAS = "champion-perceptual"
# Stored with the model: CUDA first, CPU fallback (onnxruntime-gpu falls back by itself).
PYFUNC_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def registered_name(scale: int, variant: str) -> str:
    return f"gensr-x{int(scale)}-{variant}"


def _signature(channels: int):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    spec = lambda name: TensorSpec(np.dtype(np.float32), (-1, channels, -1, -1), name)  # noqa: E731
    return ModelSignature(inputs=Schema([spec(INPUT_NAME)]), outputs=Schema([spec(OUTPUT_NAME)]))


def log_and_register(
    model_path: Path,
    meta: dict[str, Any],
    experiment_id: str,
    extra_artifacts: list[Path] = (),
    metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Log `model_path` with mlflow.onnx to the variant's run and register it; returns where it went."""
    import mlflow
    from mlflow import MlflowClient

    variant, scale = str(meta["variant"]), int(meta["scale"])
    run = variant_run(MlflowClient(), experiment_id, variant, meta.get("mlflow_run_id"), "export")
    run_id = run.run_id
    name = registered_name(scale, variant)
    onnx_model = onnx.load_model(model_path)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.onnx.log_model(
            onnx_model,
            name="onnx_model",
            registered_model_name=name,
            signature=_signature(int(meta["channels"])),
            onnx_execution_providers=PYFUNC_PROVIDERS,
            save_as_external_data=False,  # one self-contained file, as in exports/
            metadata={p.key: p.value for p in onnx_model.metadata_props},
        )
        for path in extra_artifacts:
            mlflow.log_artifact(str(path), artifact_path="onnx_exports")
        if metrics:
            mlflow.log_metrics({f"export/{k}": float(v) for k, v in metrics.items()})
    version = str(info.registered_model_version)
    return {"registered_model": name, "version": version, "run_id": run_id, "new_run": run.created,
            "model_uri": f"models:/{name}/{version}"}


def set_champion(scale: int, champion: str, version: str, variants: list[str], alias: str = CHAMPION_ALIAS) -> str:
    """Point `alias` at this version; drop it from the other variants of this scale."""
    from mlflow import MlflowClient

    name = registered_name(scale, champion)
    MlflowClient().set_registered_model_alias(name, alias, version)
    clear_alias(scale, alias, [v for v in variants if v != champion])
    return f"models:/{name}@{alias}"


def clear_alias(scale: int, alias: str, variants: list[str]) -> None:
    """Remove `alias` from these variants' registered models (where they hold it)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    for variant in variants:
        try:
            client.delete_registered_model_alias(registered_name(scale, variant), alias)
        except MlflowException:
            pass  # that model was never registered or never held the alias
