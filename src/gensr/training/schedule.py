"""Learning-rate schedule: linear warm-up, then cosine decay or step decay (per training step).

A callable object rather than a closure: LambdaLR then stores its fields (plain numbers) in the
checkpoint, which keeps Lightning checkpoints loadable with `weights_only=True`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

KINDS = ("cosine", "step", "constant")


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

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** ((step - self.warmup) // max(self.step_size, 1))
        span = max(self.total - self.warmup, 1)
        progress = min((step - self.warmup) / span, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(optim_cfg: Mapping, params, total_steps: int):
    """`optim.optimizer` (a `_partial_` Hydra target) + `optim.schedule` -> (optimizer, LambdaLR)."""
    from hydra.utils import instantiate

    optimizer = instantiate(dict(optim_cfg["optimizer"]))(params)
    sched_cfg = dict(optim_cfg.get("schedule") or {})
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupSchedule(total_steps, **sched_cfg))
    return optimizer, scheduler
