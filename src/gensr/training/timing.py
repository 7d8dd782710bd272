"""Where a training run's wall time goes: optimisation steps against everything around them.

`PhaseTimer`, the first callback of gensr.training.run, charges every second of `trainer.fit`
(from its `setup` hook to its `on_fit_end`) to exactly one phase, so the phases add up to the wall:

- optim: on_train_batch_start -> on_train_batch_end: training_step (forward, losses, their
  `self.log` calls and the NaN guard), backward, clipping, the optimiser and LR-scheduler steps.
- loader: on_train_batch_end -> the next on_train_batch_start, and on_train_epoch_start -> the
  epoch's first batch: waiting for the next batch and moving it to the device, a new epoch's
  loader iterator, and Lightning's bookkeeping between those hooks.
- val: on_validation_start -> on_validation_end (the sanity check too, when enabled).
- ckpt: every `trainer.save_checkpoint` (ModelCheckpoint's best and last): the state dicts, the
  serialisation and the atomic write.
- ema: the hooks of the EMA callback (its per-step update, the weight swaps around validation).
- log: the loggers' `log_metrics` / `log_hyperparams` (MLflow) and the hooks of the logging
  callbacks run.py names (history.csv and its console line, image grids, the run's params).
- other: the rest (setup, restoring a checkpoint, the end of the loop).

Phases nest on a stack: the inner one pauses the outer, so a checkpoint written in the loader gap
or a grid logged during validation counts as ckpt / log only. Lightning has no hooks around a
checkpoint write, a logger call or another callback's hooks: `setup` wraps those methods on their
instances (timed wrappers), `teardown` puts them back. On CUDA every phase boundary synchronises,
so kernels count for the phase that queued them (training_step already syncs for its NaN guard:
little is lost). The totals are part of the checkpoint and add up across resumes, like RunInfo's
seconds.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch

PHASES = ("optim", "val", "ckpt", "loader", "log", "ema", "other")
LABELS = {**{p: p for p in PHASES}, "optim": "optimisation"}  # in the console line and bench/speed.py (g)
# Callback hooks that belong to the phase around them, not to the callback's: checkpoint state
# is part of ckpt; an exception ends the run.
NOT_WRAPPED = {"on_save_checkpoint", "on_load_checkpoint", "on_exception"}


class PhaseClock:
    """Exclusive seconds per phase: time goes to the phase on top of the stack."""

    def __init__(self, now: Callable[[], float] = time.perf_counter):
        self.now, self.sync = now, None  # sync: torch.cuda.synchronize on a GPU
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.stack, self.last = ["other"], None  # last: time of the latest switch (None: stopped)

    @property
    def running(self) -> bool:
        return self.last is not None

    def start(self) -> None:
        self.stack, self.last = ["other"], self.now()

    def _switch(self) -> None:
        if self.sync is not None:
            self.sync()
        t = self.now()
        self.seconds[self.stack[-1]] += t - self.last
        self.last = t

    def enter(self, phase: str) -> None:
        if self.running:
            self._switch()
            self.stack.append(phase)

    def leave(self, phase: str) -> None:
        if self.running and len(self.stack) > 1 and self.stack[-1] == phase:
            self._switch()
            self.stack.pop()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.enter(name)
        try:
            yield
        finally:
            self.leave(name)

    def stop(self) -> None:
        if self.running:
            self._switch()
            self.last = None


class PhaseTimer(L.Callback):
    """`phases` names callbacks whose hooks count for a phase, e.g. {"ema": [ema], "log": [history]}."""

    def __init__(self, phases: Mapping[str, Sequence[L.Callback]] | None = None,
                 now: Callable[[], float] = time.perf_counter):
        unknown = set(phases or {}) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown phases {sorted(unknown)}; phases are {PHASES}")
        self.phases = {k: list(v) for k, v in (phases or {}).items()}
        self.clock = PhaseClock(now)
        self.steps, self.started, self.ended = 0, None, None
        self.before: dict[str, Any] = {"seconds": {}, "steps": 0, "wall_s": 0.0}  # earlier parts of a resumed run
        self._wrapped: list[tuple[Any, str, Any]] = []

    @property
    def state_key(self) -> str:
        return "PhaseTimer"

    # ---- wrapping what Lightning has no hooks around -----------------------------------------
    def _wrap(self, obj: Any, name: str, phase: str) -> None:
        original = vars(obj).get(name)  # an instance attribute to restore, else the class's method
        fn = getattr(obj, name)
        clock = self.clock

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            with clock.phase(phase):
                return fn(*args, **kwargs)

        setattr(obj, name, timed)
        self._wrapped.append((obj, name, original))

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self._wrapped:
            return
        self._wrap(trainer, "save_checkpoint", "ckpt")
        for logger in trainer.loggers:
            for name in ("log_metrics", "log_hyperparams"):
                self._wrap(logger, name, "log")
        for phase, callbacks in self.phases.items():
            for cb in callbacks:
                for name in dir(L.Callback):
                    if (name.startswith("on_") and name not in NOT_WRAPPED
                            and getattr(type(cb), name) is not getattr(L.Callback, name)):
                        self._wrap(cb, name, phase)
        on_gpu = trainer.strategy.root_device.type == "cuda"
        self.clock.sync = torch.cuda.synchronize if on_gpu else None
        self.clock.start()
        self.started = self.clock.last

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.clock.stop()
        for obj, name, original in reversed(self._wrapped):
            if original is None:
                delattr(obj, name)
            else:
                setattr(obj, name, original)
        self._wrapped = []

    # ---- the phases hooks bound ----------------------------------------------------------------
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.clock.enter("loader")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.clock.leave("loader")
        self.clock.enter("optim")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.leave("optim")
        self.steps += 1
        self.clock.enter("loader")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.clock.leave("loader")

    def on_train_end(self, trainer, pl_module) -> None:
        self.clock.leave("loader")

    def on_validation_start(self, trainer, pl_module) -> None:
        self.clock.enter("val")

    def on_validation_end(self, trainer, pl_module) -> None:
        self.clock.leave("val")

    def on_fit_end(self, trainer, pl_module) -> None:
        self.clock.stop()
        self.ended = self.clock.now()

    # ---- totals (this process + the earlier parts of a resumed run) ----------------------------
    def seconds(self) -> dict[str, float]:
        return {p: float(self.before["seconds"].get(p, 0.0)) + self.clock.seconds[p] for p in PHASES}

    def wall(self) -> float:
        """Seconds from `setup` to `on_fit_end` (so far: to the latest phase switch), measured apart
        from the phases, which must add up to it."""
        end = self.ended if self.ended is not None else self.clock.last
        own = end - self.started if self.started is not None and end is not None else 0.0
        return float(self.before["wall_s"]) + own

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds(), "steps": self.before["steps"] + self.steps, "wall_s": self.wall()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = {"seconds": dict(state_dict.get("seconds", {})), "steps": int(state_dict.get("steps", 0)),
                       "wall_s": float(state_dict.get("wall_s", 0.0))}

    def report(self) -> dict[str, Any]:
        """timings.json: seconds and fraction of the wall per phase, steps, ms per step."""
        seconds, wall, steps = self.seconds(), self.wall(), self.before["steps"] + self.steps
        return {
            "wall_s": round(wall, 3), "steps": steps,
            "seconds": {p: round(s, 4) for p, s in seconds.items()},
            "fractions": {p: round(s / wall, 5) if wall > 0 else 0.0 for p, s in seconds.items()},
            "optim_ms_per_step": round(1e3 * seconds["optim"] / steps, 2) if steps else None,
            "wall_ms_per_step": round(1e3 * wall / steps, 2) if steps else None,
        }


def mlflow_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The report as MLflow metrics: timing/<phase>_fraction, timing/*_ms_per_step, timing/wall_s."""
    out = {f"timing/{p}_fraction": float(f) for p, f in report["fractions"].items()}
    out["timing/wall_s"] = float(report["wall_s"])
    for key in ("optim_ms_per_step", "wall_ms_per_step"):
        if report.get(key) is not None:
            out[f"timing/{key}"] = float(report[key])
    return out


def summary(variant: str, report: Mapping[str, Any]) -> str:
    """`[ae_res] time: 94.1% optimisation, val 2.3%, ckpt 0.8%, ...` (phases in PHASES order)."""
    f = report["fractions"]
    parts = [f"{100 * f['optim']:.1f}% {LABELS['optim']}", *(f"{LABELS[p]} {100 * f[p]:.1f}%" for p in PHASES[1:])]
    per_step = ""
    if report.get("wall_ms_per_step") is not None:
        per_step = (f" ({report['wall_ms_per_step']:.0f} ms/step wall, {report['optim_ms_per_step']:.0f} in "
                    f"optimisation, {report['steps']} steps)")
    return f"[{variant}] time: " + ", ".join(parts) + per_step
