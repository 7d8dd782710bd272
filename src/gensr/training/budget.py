"""A wall-clock budget for training that the schedule itself follows (`trainer.time_budget_s`).

Steps slow down over a long run (an hour on 2 CPU cores: ~370 ms per step at first, 430-490 ms
later), so a step count planned before training either ends early or is cut short by a timer with
the cosine and the loss phases unfinished. `TimeBudget` re-plans the total number of steps from the
run's own wall time, everything included (validation, checkpoints, EMA, logging, the loader):

- when: `calibration_steps` steps after the first one (which carries one-time costs), unless a
  validation comes first, then at the first step after every validation (its cost now known) and
  whenever `replan_every` x the budget has passed since the last plan (at least `MIN_WINDOW`
  steps): a 12-minute x2 run re-planned at its 4 validations only ran its last 322 steps at 469 ms
  instead of the 376 it had measured, and max_time cut it 17 steps short of its schedule;
- what it measures, over the window since the previous plan: seconds per training step, and
  seconds per validation (validation start -> the next training batch: validation, checkpoints,
  a new epoch's loader);
- the plan: steps done + the steps that, with a validation every `interval` steps and a final one,
  fit in what is left of `end_at` x the budget (never fewer than one more step).

The new total goes to the module (`total_steps`: its loss phases), to every WarmupSchedule
(`replan`), to the console line and the checkpoint identity (History, RunInfo); the run stops itself
at the planned step (`trainer.should_stop`: Lightning then validates and checkpoints). Progress never
goes back: both ramps (loss phases, cosine) continue from their current value to 1.0 at the new total
(gensr.training.schedule.ramp), so the run ends with the lr at min_lr_ratio and the last loss phase
on. The plan, the ramps' starts and the measurement window are part of the checkpoint: a resumed run
continues them, its elapsed time counting on from the checkpoint's. In DDP rank 0's plan is
broadcast, so every process stops at the same step.

Off (`time_budget_s: null`) this callback is not used: the run is the fixed `max_steps` one, bit for bit.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L

from gensr.training.schedule import WarmupSchedule, moved_start

END_AT = 0.97            # plan to end at this share of the budget: room for drift after the last plan
CALIBRATION_STEPS = 50   # the first re-plan comes this many steps after the first (or at a validation)
REPLAN_EVERY = 0.05      # then re-plan at least every 5% of the budget: the step time drifts in between
MIN_WINDOW = 10          # steps a timed window needs to give a usable seconds-per-step


class TimeBudget(L.Callback):
    """`now`: the clock (seconds; injectable so tests need no real timing)."""

    def __init__(self, budget_s: float, interval: int, run_info: Any = None, history: Any = None,
                 now: Callable[[], float] = time.monotonic, calibration_steps: int = CALIBRATION_STEPS,
                 end_at: float = END_AT, replan_every: float = REPLAN_EVERY):
        self.budget_s, self.interval = float(budget_s), max(int(interval), 1)
        self.run_info, self.history, self.now = run_info, history, now
        self.calibration_steps, self.end_at = max(int(calibration_steps), 1), float(end_at)
        self.replan_every_s = float(replan_every) * self.budget_s
        self.planned: int | None = None          # total steps (None: the module's, at the start)
        self.first_plan: int | None = None
        self.progress_start = [0, 0.0]           # the module's loss-phase ramp (SRLightningBase.progress)
        self.plans: list[list] = []              # [step, elapsed s, total] per re-plan
        self.seconds_before = 0.0                # elapsed seconds of the earlier parts of a resumed run
        self.eval_s, self.evals, self.eval_per = 0.0, 0, 0.0  # validation windows: s, count, s each
        self.eval_from: float | None = None      # elapsed when the open validation window began
        self.mark: list | None = None            # [step, elapsed, eval_s, evals] the window starts at
        self.ended_s: float | None = None
        self._t0: float | None = None

    @property
    def state_key(self) -> str:
        return "TimeBudget"

    def elapsed(self) -> float:
        return self.seconds_before + (self.now() - self._t0 if self._t0 is not None else 0.0)

    # ---- hooks -------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = self.now()
        if self.planned is None:  # a fresh run: the configured max_steps is the first plan
            self.planned = self.first_plan = int(pl_module.total_steps)
        self._apply(pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.eval_from, self.evals = self.elapsed(), self.evals + 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step, validated = pl_module.iteration, self.eval_from is not None
        if validated:
            self.eval_s += self.elapsed() - self.eval_from
            self.eval_from = None
        if self.mark is None:
            if step >= 1:  # a fresh run's first step is done: the first window starts here
                self.mark = [step, self.elapsed(), self.eval_s, self.evals]
            return
        calibrate = not self.plans and step - self.mark[0] >= self.calibration_steps
        periodic = (bool(self.plans) and step - self.mark[0] >= MIN_WINDOW
                    and self.elapsed() - self.mark[1] >= self.replan_every_s)
        if (validated or calibrate or periodic) and self.mark[0] < step < self.planned:
            self.replan(trainer, pl_module, step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.iteration >= self.planned:
            trainer.should_stop = True  # Lightning validates and checkpoints, then ends the fit

    def on_train_end(self, trainer, pl_module) -> None:
        self.ended_s = self.elapsed()
        if trainer.is_global_zero:
            r = self.report(pl_module)
            done = "completed" if r["schedule_completed"] else "NOT completed"
            print(f"[{pl_module.variant}] time budget: schedule {done} at step {pl_module.iteration} of "
                  f"{self.planned} planned (first plan {self.first_plan}, {len(self.plans)} re-plans), "
                  f"{r['budget_used_s']:.0f} s of {self.budget_s:.0f} s", flush=True)

    # ---- planning ----------------------------------------------------------------------------------
    def replan(self, trainer, pl_module, step: int) -> None:
        """A new total from the window since the previous plan (see the module docstring)."""
        now = self.elapsed()
        step0, now0, eval0, evals0 = self.mark
        eval_s, evals = self.eval_s - eval0, self.evals - evals0
        if evals:
            self.eval_per = eval_s / evals
        step_s = max(now - now0 - eval_s, 0.0) / (step - step0)
        per_step = step_s + self.eval_per / self.interval
        left = self.end_at * self.budget_s - now - self.eval_per  # the final validation comes after
        total = step + max(1, math.floor(left / per_step)) if per_step > 0 else self.planned
        total = int(trainer.strategy.broadcast(total, src=0))
        self.mark = [step, now, self.eval_s, self.evals]
        self.progress_start = list(moved_start(step, self.planned, *self.progress_start))
        for config in trainer.lr_scheduler_configs:
            for fn in getattr(config.scheduler, "lr_lambdas", ()):
                if isinstance(fn, WarmupSchedule):  # at the scheduler's own step: the lr in use stays
                    fn.replan(config.scheduler.last_epoch, total)
        was, self.planned = self.planned, total
        self.plans.append([step, round(now, 3), total])
        self._apply(pl_module)
        if trainer.is_global_zero:
            val = f"{self.eval_per:.1f} s per validation" if self.evals else "no validation timed yet"
            print(f"[{pl_module.variant}] time budget: step {step}, {now:.0f} of {self.budget_s:.0f} s: "
                  f"{1e3 * step_s:.0f} ms per step + {val} -> {total} steps (was {was})", flush=True)
        for logger in trainer.loggers:
            logger.log_metrics({"budget/planned_steps": total, "budget/step_ms": 1e3 * step_s,
                                "budget/validation_s": self.eval_per, "budget/elapsed_s": now}, step=step)

    def _apply(self, pl_module) -> None:
        pl_module.total_steps, pl_module.progress_start = self.planned, tuple(self.progress_start)
        if self.history is not None:
            self.history.total = self.planned
        if self.run_info is not None:  # what resume_decision reads to tell a finished run
            self.run_info.info["total_steps"] = self.planned

    # ---- results -----------------------------------------------------------------------------------
    def report(self, pl_module) -> dict[str, Any]:
        """The run's budget figures (metrics.json): planned vs done steps, seconds used, completed."""
        used = self.ended_s if self.ended_s is not None else self.elapsed()
        return {"time_budget_s": self.budget_s, "planned_steps": self.planned, "first_planned_steps": self.first_plan,
                "schedule_completed": pl_module.iteration >= self.planned and pl_module.progress >= 1.0,
                "budget_used_s": round(used, 1), "replans": len(self.plans)}

    # ---- checkpoint ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"planned": self.planned, "first_plan": self.first_plan, "progress_start": list(self.progress_start),
                "plans": [list(p) for p in self.plans], "elapsed_s": self.elapsed(), "eval_s": self.eval_s,
                "evals": self.evals, "eval_per": self.eval_per, "eval_from": self.eval_from,
                "mark": None if self.mark is None else list(self.mark)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.planned, self.first_plan = state_dict["planned"], state_dict["first_plan"]
        self.progress_start = list(state_dict["progress_start"])
        self.plans = [list(p) for p in state_dict["plans"]]
        self.seconds_before = float(state_dict["elapsed_s"])
        self.eval_s, self.evals = float(state_dict["eval_s"]), int(state_dict["evals"])
        self.eval_per, self.eval_from = float(state_dict["eval_per"]), state_dict["eval_from"]
        self.mark = state_dict["mark"]
