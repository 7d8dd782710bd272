"""Where a training run's wall time goes (gensr.training.timing): the phase accounting on a fake
clock, and models/<v>/timings.json + the MLflow timing metrics of a real tiny run (no timing is
asserted: only that the accounting adds up)."""
from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gensr.training.timing import PHASES, PhaseClock, PhaseTimer, mlflow_metrics, summary
from train_fixtures import ROOT, run_train, tiny_overrides


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_nested_phases_pause_the_outer_one():
    now = FakeTime()
    clock = PhaseClock(now)
    clock.enter("optim")  # stopped: nothing is charged, the stack stays as it was
    assert clock.stack == ["other"]
    clock.start()
    now.t = 1.0
    clock.enter("optim")          # other: 1
    now.t = 4.0
    clock.enter("ema")            # optim: 3
    now.t = 4.5
    clock.leave("ema")            # ema: 0.5
    clock.leave("val")            # not the open phase: ignored
    now.t = 6.0
    clock.leave("optim")          # optim: 3 + 1.5
    with clock.phase("ckpt"):
        now.t = 8.0               # ckpt: 2
    now.t = 9.0
    clock.stop()                  # other: 1 + 1
    assert clock.seconds == {**dict.fromkeys(PHASES, 0.0), "other": 2.0, "optim": 4.5, "ema": 0.5, "ckpt": 2.0}
    now.t = 20.0
    clock.stop()
    assert sum(clock.seconds.values()) == 9.0  # stopped twice: nothing more


def test_totals_add_up_across_a_resume():
    now = FakeTime()
    first = PhaseTimer(now=now)
    first.clock.start()
    first.started = 0.0
    for _ in range(3):  # 3 steps of 2 s, each followed by 0.5 s waiting for the next batch
        first.on_train_batch_start(None, None, None, 0)
        now.t += 2.0
        first.on_train_batch_end(None, None, None, None, 0)
        now.t += 0.5
    with first.clock.phase("ckpt"):  # as trainer.save_checkpoint asks for it
        state = first.state_dict()
    assert state["steps"] == 3 and state["seconds"]["optim"] == 6.0 and state["wall_s"] == 7.5

    now.t = 100.0
    second = PhaseTimer(now=now)
    second.load_state_dict(state)
    second.clock.start()
    second.started = 100.0
    second.on_train_batch_start(None, None, None, 0)
    now.t += 2.0
    second.on_train_batch_end(None, None, None, None, 0)
    now.t += 1.0
    second.on_fit_end(None, None)
    report = second.report()
    assert report["steps"] == 4 and report["wall_s"] == 10.5
    assert report["seconds"]["optim"] == 8.0 and report["seconds"]["loader"] == 1.5 + 1.0
    assert report["fractions"]["optim"] == pytest.approx(8.0 / 10.5, abs=1e-5)
    assert report["optim_ms_per_step"] == 2000.0 and report["wall_ms_per_step"] == 2625.0
    line = summary("ae_res", report)
    assert line.startswith("[ae_res] time: 76.2% optimisation, val 0.0%, ckpt 0.0%, loader 23.8%, log 0.0%")
    assert mlflow_metrics(report)["timing/optim_fraction"] == report["fractions"]["optim"]
    with pytest.raises(ValueError, match="unknown phases"):
        PhaseTimer({"emas": []})


def test_a_run_writes_timings_that_add_up_and_logs_them(project):
    proc = run_train(project, tiny_overrides("ae_res", steps=4, interval=2))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    t = json.loads((project / "models" / "ae_res" / "timings.json").read_text())
    assert t["variant"] == "ae_res" and t["steps"] == 4 and set(t["seconds"]) == set(PHASES)
    # every second of fit goes to exactly one phase: they add up to the wall, measured apart
    assert sum(t["seconds"].values()) == pytest.approx(t["wall_s"], rel=0.02)
    assert all(0.0 <= f <= 1.0 for f in t["fractions"].values())
    assert sum(t["fractions"].values()) == pytest.approx(1.0, abs=0.02)
    # two validations, each followed by checkpoints, an image grid and an MLflow log; EMA every step
    for phase in ("optim", "val", "ckpt", "log", "ema", "loader"):
        assert t["seconds"][phase] > 0, phase
    # the report rounds seconds to 4 decimals, wall_s to 3 and ms/step to 2: allow exactly that much
    assert t["optim_ms_per_step"] == pytest.approx(1e3 * t["seconds"]["optim"] / 4, abs=1e3 * 5e-5 / 4 + 5e-3)
    assert t["wall_ms_per_step"] == pytest.approx(1e3 * t["wall_s"] / 4, abs=1e3 * 5e-4 / 4 + 5e-3)
    assert "[ae_res] time: " in proc.stdout and "% optimisation, val " in proc.stdout

    run_id = json.loads((project / "models" / "ae_res" / "metrics.json").read_text())["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    logged = client.get_run(run_id).data.metrics
    for phase in PHASES:
        assert logged[f"timing/{phase}_fraction"] == pytest.approx(t["fractions"][phase]), phase
    assert logged["timing/optim_ms_per_step"] == pytest.approx(t["optim_ms_per_step"])
    assert "final/val_psnr_y" in logged  # the final metrics keep their names
    assert [a.path for a in client.list_artifacts(run_id, "timings")] == ["timings/timings.json"]


def test_timings_are_a_train_stage_metric():
    train = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]
    assert "models/${key}/timings.json" in train["metrics"]
