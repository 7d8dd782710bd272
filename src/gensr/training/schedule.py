"""Learning-rate schedule: linear warm-up, then cosine decay or step decay (per training step).

A callable object rather than a closure: LambdaLR then stores its fields (plain numbers) in the
checkpoint, which keeps Lightning checkpoints loadable with `weights_only=True`.

The cosine's progress is a `ramp` from the end of warm-up to `total`. A wall-clock budget
(gensr.training.budget) may change `total` while training (`replan`): the ramp then continues from
where it is, so the learning rate never jumps back up, and still reaches its minimum at the new
total. Without a re-plan the ramp is exactly (step - warmup) / (total - warmup), as always.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

KINDS = ("cosine", "step", "constant")


def ramp(step: int, total: int, start: int = 0, value: float = 0.0) -> float:
    """Fraction of a span done at `step`: `value` at step `start`, rising linearly to 1.0 at `total`.

    (start, value) = (0, 0.0) gives step / total, bit for bit; `moved_start` moves the start when
    the total changes. Past `total` (or at it, after a re-plan) it is 1.0.
    """
    if step >= total > start and value > 0.0:  # after a re-plan: exactly 1.0 however value rounds
        return 1.0
    return min(value + (1.0 - value) * (step - start) / max(total - start, 1), 1.0)


def moved_start(step: int, total: int, start: int, value: float) -> tuple[int, float]:
    """The ramp's (start, value) for a new total from `step` on: it goes on from its value at `step`."""
    return (int(step), ramp(step, total, start, value)) if step > start else (int(start), float(value))


class WarmupSchedule:
    def __init__(
        self,
        total_steps: int,
        warmup_steps: int = 0,
        kind: str = "cosine",
        min_lr_ratio: float = 0.01,
        step_size: int = 1000,
        gamma: float = 0.5,
    ):
        if kind not in KINDS:
            raise ValueError(f"optim.schedule.kind must be one of {KINDS}, got {kind!r}")
        self.total, self.warmup, self.kind = int(total_steps), int(warmup_steps), kind
        self.min_ratio, self.step_size, self.gamma = float(min_lr_ratio), int(step_size), float(gamma)
        self.start, self.start_value = self.warmup, 0.0  # the cosine's ramp (moved by `replan`)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** ((step - self.warmup) // max(self.step_size, 1))
        progress = ramp(step, self.total, self.start, self.start_value)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def replan(self, step: int, total: int) -> None:
        """End the cosine at `total` instead, going on from its value at `step` (the scheduler's
        current step: the learning rate in use does not change)."""
        self.start, self.start_value = moved_start(step, self.total, self.start, self.start_value)
        self.total = int(total)


def build_optimizer(optim_cfg: Mapping, params, total_steps: int):
    """`optim.optimizer` (a `_partial_` Hydra target) + `optim.schedule` -> (optimizer, LambdaLR)."""
    from hydra.utils import instantiate

    optimizer = instantiate(dict(optim_cfg["optimizer"]))(params)
    sched_cfg = dict(optim_cfg.get("schedule") or {})
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupSchedule(total_steps, **sched_cfg))
    return optimizer, scheduler
