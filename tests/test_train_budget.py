"""`trainer.time_budget_s` (gensr.training.budget): a budgeted run re-plans its step count from its
own time per step and ends its schedule (warm-up, cosine, L1 -> MSE) inside the budget. The budget's
clock is a fake one that the run's own hooks advance, so nothing depends on real timing; without a
budget the run is the fixed `max_steps` one, bit for bit."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from gensr.config import compose
from gensr.schema import ConfigError, validate
from gensr.training.budget import TimeBudget
from gensr.training.run import train
from gensr.training.schedule import WarmupSchedule, moved_start, ramp
from train_fixtures import run_train, tiny_overrides

LR, MIN_RATIO, WARMUP = 1e-3, 0.01, 3
# ae_res with the full profile's recipe: warm-up, cosine to 1%, L1 for 80% of the run, then MSE
RECIPE = ["+models.ae_res.losses.l1.active=[0.0,0.8]",
          "+models.ae_res.losses.mse={_target_:gensr.losses.MSELoss,weight:1.0,active:[0.8,1.0]}",
          f"models.ae_res.optim.optimizer.lr={LR}", f"models.ae_res.optim.schedule.warmup_steps={WARMUP}",
          f"models.ae_res.optim.schedule.min_lr_ratio={MIN_RATIO}", "models.ae_res.optim.schedule.kind=cosine"]


class FakeClock(L.Callback):
    """The budget's clock, advanced by the run: a step at iteration k "takes" step_s(k) seconds, a
    validation `val_s`. Binary fractions only, so sums are exact whichever order they are added in."""

    def __init__(self, step_s, val_s: float = 2.0):
        self.t, self.step_s, self.val_s = 0.0, step_s, val_s

    def __call__(self) -> float:
        return self.t

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.t += self.step_s(pl_module.iteration)

    def on_validation_start(self, trainer, pl_module):
        self.t += self.val_s


def slowing(k: int) -> float:
    """1 s per step at first, a quarter of a second more every 5 steps (planned at 1 s per step)."""
    return 1.0 + 0.25 * (k // 5)


class Trace(L.Callback):
    """Per step, as the step sees them: (iteration, progress, lr, active pixel losses); and the end."""

    def __init__(self):
        self.steps: list[tuple[int, float, float, tuple[str, ...]]] = []
        self.end: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        names = tuple(loss.name for loss in pl_module.active_losses("pixel"))
        self.steps.append((pl_module.iteration, pl_module.progress, trainer.optimizers[0].param_groups[0]["lr"], names))

    def on_train_end(self, trainer, pl_module):
        self.end = {"iteration": pl_module.iteration, "progress": pl_module.progress, "total": pl_module.total_steps,
                    "lr": trainer.optimizers[0].param_groups[0]["lr"],
                    "active": [loss.name for loss in pl_module.active_losses("pixel")]}


class Crash(L.Callback):
    """Stands in for a kill at the start of epoch `at` (the previous epoch's last.ckpt is written)."""

    def __init__(self, at: int):
        self.at = at

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            raise RuntimeError("simulated kill")


def budget_cfg(project, budget_s: float = 60, steps: int = 40, interval: int = 5):
    return compose(tiny_overrides("ae_res", steps=steps, interval=interval) + RECIPE
                   + [f"trainer.time_budget_s={budget_s}"], root=project)


def old_lambda(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """WarmupSchedule's cosine before the budget existed (the reference for `bit for bit`)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def test_slowing_steps_end_the_schedule_inside_the_budget(project, capsys):
    clock, trace = FakeClock(slowing), Trace()
    # 40 steps, planned at 1 s each, would take 40 + 0.25 x (5 + 10 + ... + 35) + 8 validations x 2 s = 91 s
    metrics = train(budget_cfg(project, budget_s=60, steps=40), extra_callbacks=[clock, trace], clock=clock)
    out = capsys.readouterr().out
    steps = metrics["steps"]
    assert metrics["first_planned_steps"] == 40 and metrics["planned_steps"] == steps < 40
    assert metrics["schedule_completed"] is True and metrics["time_budget_s"] == 60
    assert clock.t <= 60 and metrics["budget_used_s"] <= 60  # the final validation included
    assert metrics["replans"] >= 3 and "time budget: schedule completed at step" in out

    # the schedule ran to its end: progress 1, lr at min_lr_ratio, MSE (the last phase) on
    assert trace.end == {"iteration": steps, "progress": 1.0, "total": steps, "lr": pytest.approx(LR * MIN_RATIO),
                         "active": ["mse"]}
    progress = [p for _, p, _, _ in trace.steps]
    lrs = [lr for k, _, lr, _ in trace.steps if k >= WARMUP]
    assert [k for k, *_ in trace.steps] == list(range(steps))
    assert all(a <= b for a, b in zip(progress, progress[1:])), "progress went back"
    assert all(a >= b for a, b in zip(lrs, lrs[1:])), "the cosine went back up"
    phases = [names for *_, names in trace.steps]
    assert phases[0] == ("l1",) and phases[-1] == ("mse",)
    assert phases.index(("mse",)) == next(i for i, p in enumerate(progress) if p >= 0.8)

    # what users see: metrics.json, history.csv, and a checkpoint resume_decision sees as finished
    saved = json.loads((project / "models" / "ae_res" / "metrics.json").read_text())
    assert {k: saved[k] for k in ("planned_steps", "schedule_completed", "time_budget_s")} == {
        "planned_steps": steps, "schedule_completed": True, "time_budget_s": 60}
    last = torch.load(project / "checkpoints" / "ae_res" / "last.ckpt", weights_only=True)
    assert last["gensr"]["iteration"] == last["gensr"]["total_steps"] == steps
    assert f"step {steps}/{steps}" in out


def test_without_a_budget_the_schedule_is_the_fixed_one(project, capsys):
    for total, warmup in ((40, 3), (7, 0), (5, 10), (1000, 300)):
        fn = WarmupSchedule(total, warmup, min_lr_ratio=MIN_RATIO)
        assert [fn(k) for k in range(total + 3)] == [old_lambda(k, total, warmup, MIN_RATIO) for k in range(total + 3)]
        assert [ramp(k, total) for k in range(total + 1)] == [k / total for k in range(total + 1)]

    trace = Trace()
    cfg = compose(tiny_overrides("ae_res", steps=6, interval=3) + RECIPE, root=project)
    metrics = train(cfg, extra_callbacks=[trace])
    assert "time budget" not in capsys.readouterr().out and "schedule_completed" not in metrics
    assert metrics["steps"] == 6 and trace.end["total"] == 6
    for k, progress, lr, names in trace.steps:  # exactly today's formulas
        assert progress == k / 6 and lr == LR * old_lambda(k, 6, WARMUP, MIN_RATIO), k
        assert names == (("l1",) if k / 6 < 0.8 else ("mse",))


def test_a_replan_never_moves_progress_back():
    fn, start, total, seen = WarmupSchedule(100, 10), (0, 0.0), 100, []
    for step in range(60):
        if step in (15, 30, 45):  # shorter, longer, much shorter: both ramps go on from where they are
            new = {15: 80, 30: 120, 45: 50}[step]
            before = (ramp(step, total, *start), fn(step))
            start = moved_start(step, total, *start)
            fn.replan(step, new)
            total = new
            assert (ramp(step, total, *start), fn(step)) == before
        seen.append((ramp(step, total, *start), fn(step)))
    assert all(a[0] <= b[0] and (i < 10 or a[1] >= b[1]) for i, (a, b) in enumerate(zip(seen, seen[1:])))
    assert ramp(50, total, *start) == 1.0 and fn(50) == pytest.approx(0.01)


class Module:
    """What TimeBudget reads and sets on a SRLightningBase."""
    variant = "toy"

    def __init__(self, total: int):
        self.iteration, self.total_steps, self.progress_start = 0, total, (0, 0.0)

    @property
    def progress(self) -> float:
        return ramp(self.iteration, self.total_steps, *self.progress_start)


def _drive(budget: TimeBudget, clock: list, step_s, val_s: float = 1.0, interval: int = 10_000) :
    """Run the hooks as Lightning calls them, a step taking step_s(elapsed) seconds on the fake
    `clock` the budget reads; returns (the end time, the module, its schedule, its optimiser)."""
    lam = WarmupSchedule(1000, warmup_steps=10, min_lr_ratio=MIN_RATIO)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
    trainer = SimpleNamespace(should_stop=False, is_global_zero=True, sanity_checking=False, loggers=[],
                              strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj),
                              lr_scheduler_configs=[SimpleNamespace(scheduler=sched)])
    module = Module(1000)
    budget.on_train_start(trainer, module)
    while not trainer.should_stop:
        budget.on_train_batch_start(trainer, module, None, 0)
        clock[0] += step_s(clock[0])
        opt.step()
        sched.step()
        module.iteration += 1
        budget.on_train_batch_end(trainer, module, None, None, 0)
        if module.iteration % interval == 0 or trainer.should_stop:
            budget.on_validation_start(trainer, module)
            clock[0] += val_s
    budget.on_train_end(trainer, module)
    return clock[0], module, lam, opt


def test_the_first_plan_is_calibrated_before_the_first_validation(capsys):
    # 0.5 s per step, a validation (with its checkpoints) 5 s every 100 steps, a 100 s budget; the
    # first plan (1000 steps) is far too long. The hooks are driven as Lightning calls them.
    now = [0.0]
    budget = TimeBudget(100, 100, now=lambda: now[0], calibration_steps=50,
                        replan_every=1.0)  # no periodic re-plans: exact figures
    end, module, lam, opt = _drive(budget, now, lambda t: 0.5, val_s=5.0, interval=100)
    # at step 51 (50 steps of 0.5 s after the first): 97 s - 25.5 s left at 0.5 s per step; after the
    # validation at step 100 (55 s): 97 - 55 - 5 (the final validation) at 0.5 + 5 / 100 s per step
    assert budget.plans == [[51, 25.5, 51 + 143], [100, 55.0, 100 + 67]]
    assert module.iteration == module.total_steps == lam.total == 167 and module.progress == 1.0
    assert now[0] == 55 + 67 * 0.5 + 5 <= 100 and budget.report(module)["schedule_completed"] is True
    assert opt.param_groups[0]["lr"] == pytest.approx(LR * MIN_RATIO)
    out = capsys.readouterr().out
    assert "no validation timed yet -> 194 steps (was 1000)" in out and "5.0 s per validation -> 167" in out


@pytest.mark.parametrize("replan_every, ends_inside", [(1.0, False), (0.05, True)])
def test_steps_that_slow_down_between_validations_are_caught_by_periodic_replans(replan_every, ends_inside, capsys):
    # 0.5 s per step for the first 60 s, then 0.7 s, no validation before the end: a plan made at
    # calibration only overruns the 100 s budget; re-planning every 5 s follows the drift.
    clock = [0.0]
    budget = TimeBudget(100, 10_000, now=lambda: clock[0], calibration_steps=20, replan_every=replan_every)
    end, module, lam, _ = _drive(budget, clock, lambda t: 0.5 if t < 60 else 0.7)
    assert lam.total == module.total_steps
    assert (end <= 100) is ends_inside
    assert module.progress == 1.0 and budget.report(module)["schedule_completed"] is True
    assert (len(budget.plans) > 5) is ends_inside


def test_resume_mid_run_keeps_the_plan_and_the_progress(project, capsys):
    last = project / "checkpoints" / "ae_res" / "last.ckpt"
    ref_clock, ref = FakeClock(slowing), Trace()
    ref_metrics = train(budget_cfg(project), extra_callbacks=[ref_clock, ref], clock=ref_clock)

    clock = FakeClock(slowing)
    with pytest.raises(RuntimeError, match="simulated kill"):  # the finished last.ckpt is not resumed
        train(budget_cfg(project), extra_callbacks=[clock, Crash(at=3)], clock=clock)
    killed = torch.load(last, weights_only=True)
    plan = killed["callbacks"]["TimeBudget"]
    assert killed["gensr"]["iteration"] == 15 and plan["planned"] == killed["gensr"]["total_steps"] < 40
    assert plan["elapsed_s"] == clock.t and "starting fresh" in capsys.readouterr().out

    clock, trace = FakeClock(slowing), Trace()  # a new process: its clock starts again at 0
    metrics = train(budget_cfg(project), extra_callbacks=[clock, trace], clock=clock)
    assert "resuming" in capsys.readouterr().out
    # the resumed steps see the progress, lr and loss phases the uninterrupted run saw, and it ends alike
    assert trace.steps == ref.steps[15:] and trace.end == ref.end
    assert trace.steps[0][1] == ramp(15, plan["planned"], *plan["progress_start"]) > 0
    for key in ("steps", "planned_steps", "schedule_completed", "budget_used_s", "val_psnr_y"):
        assert metrics[key] == ref_metrics[key], key


@pytest.mark.parametrize("value", [0, -5, "soon", True])
def test_time_budget_must_be_null_or_positive(value):
    with pytest.raises(ConfigError) as e:
        validate({"trainer": {"time_budget_s": value}})
    assert "must be null or a number > 0" in str(e.value) and "\n" not in str(e.value)
    validate({"trainer": {"time_budget_s": None}})
    validate({"trainer": {"time_budget_s": {"default": None, "ae_res": 90.5}}})


def test_the_train_stage_refuses_a_bad_budget_in_one_line(project):
    proc = run_train(project, ["variant=ae_res", "trainer.time_budget_s=0"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: trainer.time_budget_s=0: must be null or a number > 0"
