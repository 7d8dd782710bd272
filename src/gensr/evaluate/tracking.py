"""Evaluation results onto MLflow: each variant's own training run, plus one summary run.

Metric names are the same for every variant (`<set>/<metric>`, e.g. `test/psnr_y`,
`set5/texture_distance`), so MLflow's run comparison view lines the variants up side by side. The run
id comes from the model file's metadata (or `models/<v>/metrics.json`); a model trained without
tracking, or whose run is not in this tracking store, gets a new run named after the variant
(`gensr.tracking.variant_run`: tag `gensr.evaluation_only=true`), and the report says so. The
best variant's run is tagged `gensr.champion=true` and the perceptual champion's
`gensr.champion_perceptual=true` (the others `false`, so a previous champion loses the tag); a
summary run named `evaluate` holds every figure, the report and the comparison pictures, and names
both champions in its tags and in the experiment's `gensr.champion` / `gensr.champion_perceptual`
tags.
"""
from __future__ import annotations

import time
from pathlib import Path

from gensr.evaluate.results import BASELINE
from gensr.tracking import configure, run_tags, variant_run

SUMMARY_RUN = "evaluate"
_LOGGED = ["psnr_y", "ssim_y", "psnr_rgb", "texture_distance", "hf_ratio", "gmsd", "lpips", "delta_psnr_y",
           "delta_ssim_y", "seconds_per_image", "ms_per_mp"]


class EvalTracker:
    def __init__(self, experiment: str, root: Path, timeout_s: float = 10.0):
        import mlflow

        self.experiment_id = configure(experiment, root=root, timeout_s=timeout_s)
        self.client = mlflow.MlflowClient()
        self.run_ids: dict[str, str] = {}
        self.created: set[str] = set()  # evaluation-only runs opened here (closed after logging)
        self.notes: list[str] = []

    def attach(self, variants: list) -> dict[str, str]:
        """Find each variant's training run, or open an evaluation-only run for it."""
        for v in variants:
            run = variant_run(self.client, self.experiment_id, v.name, v.run_id, "evaluate")
            if run.created:
                self.created.add(run.run_id)
                self.notes.append(f"{v.name}: {run.why}; evaluation logged to a new run named after the variant.")
            self.run_ids[v.name] = run.run_id
        return self.run_ids

    def abort(self) -> None:
        """The stage failed after `attach`: close the runs opened here as FAILED, not RUNNING forever."""
        for run_id in self.created:
            self.client.set_terminated(run_id, status="FAILED")

    def _metrics(self, summary: dict, method: str, prefix: str = "") -> list:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        out = []
        for set_id, methods in summary.items():
            for k in _LOGGED:
                val = methods.get(method, {}).get(k)
                if isinstance(val, int | float) and val == val and abs(val) != float("inf"):
                    out.append(Metric(f"{set_id}/{prefix}{k}", float(val), now, 0))
        return out

    def log(self, summary: dict, champ: dict, files: list[Path], comparisons: Path | None,
            config: dict) -> str:
        """Log per-variant metrics/tags/artifacts and the summary run; returns its run id."""
        c = self.client
        perceptual = champ["perceptual"]
        for name, run_id in self.run_ids.items():
            metrics = self._metrics(summary, name)
            for i in range(0, len(metrics), 500):  # MLflow's batch limit is 1000 metrics
                c.log_batch(run_id, metrics=metrics[i : i + 500])
            c.set_tag(run_id, "gensr.champion", str(name == champ["variant"]).lower())
            c.set_tag(run_id, "gensr.champion_perceptual", str(name == perceptual["variant"]).lower())
            c.set_tag(run_id, "gensr.evaluated", "true")
            for f in files:
                c.log_artifact(run_id, str(f), "evaluation")
            if comparisons is not None and comparisons.is_dir():
                c.log_artifacts(run_id, str(comparisons), "evaluation/comparisons")
            if run_id in self.created:
                c.set_terminated(run_id)

        run = c.create_run(
            self.experiment_id, run_name=SUMMARY_RUN,
            tags={**run_tags("evaluate"), "gensr.champion_variant": champ["variant"],
                  "gensr.champion_run_id": self.run_ids.get(champ["variant"], ""),
                  "gensr.champion_perceptual_variant": perceptual["variant"],
                  "gensr.champion_perceptual_qualified": str(perceptual["qualified"]).lower()},
        )
        rid = run.info.run_id
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        metrics = [Metric(f"champion/{champ['set']}/psnr_y", float(champ["psnr_y"]), now, 0)]
        for method in [BASELINE, *self.run_ids]:
            metrics += self._metrics(summary, method, prefix=f"{method}/")
        params = [Param(k, str(v)[:6000]) for k, v in sorted(config.items())]
        for i in range(0, max(len(metrics), 1), 500):
            c.log_batch(rid, metrics=metrics[i : i + 500], params=params if i == 0 else [])
        for f in files:
            c.log_artifact(rid, str(f))
        if comparisons is not None and comparisons.is_dir():
            c.log_artifacts(rid, str(comparisons), "comparisons")
        c.set_terminated(rid)
        c.set_experiment_tag(self.experiment_id, "gensr.champion", champ["variant"])
        c.set_experiment_tag(self.experiment_id, "gensr.champion_perceptual", perceptual["variant"])
        return rid
