"""The one schema of gensr's configuration: what every key a user sets allows.

`validate(cfg)` runs where a config is composed: `gensr params` (before params.yaml is replaced)
and each stage's config load (`gensr.config.load_stage_config`: params.yaml + command-line
overrides, which is also how `dvc exp run -S ...` reaches the stages). A bad value stops there
with a ConfigError naming the key, the value and what is allowed, before torch is imported.
Keys absent from `cfg` are skipped (a stage's tests may hold only its slice of the config).

Per-variant values: a key of the shared `trainer` / `datamodule` groups may hold
`{default: x, <variant>: y, ...}` (`for_variant` picks one). Setting the key itself, e.g.
`trainer.max_steps=20`, replaces the whole mapping: the command line beats every per-variant
default through Hydra's own override rules, also inside DVC's composer, which runs no gensr code.
Why not a config group per variant: params.yaml is composed once for all variants (the train stage
names one later), so nothing can pick per variant while composing; the values stay in conf/ under
Hydra's override rules, and Python only looks the variant's entry up.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gensr.errors import UserError

# What the code supports; tests/test_config_validation.py checks these against the modules that
# implement them (importing those here would pull torch into every config load).
SCALES = (2, 3, 4)                                 # gensr.archs.blocks.SCALES
SCHEDULE_KINDS = ("cosine", "step", "constant")     # gensr.training.schedule.KINDS
GAN_TYPES = ("vanilla", "lsgan", "hinge")           # gensr.losses.adversarial.GAN_TYPES
UPSAMPLERS = ("progressive", "direct")              # gensr.archs.blocks.UPSAMPLERS
CALIBRATION_METHODS = ("entropy", "minmax", "percentile")  # gensr.export.lighten.CALIBRATION_METHODS
PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "32", "16", "bf16",
              64, 32, 16)                           # lightning.Trainer(precision=...)
PER_VARIANT_GROUPS = ("trainer", "datamodule")
GROUPS = ("data", "degradation", "datamodule", "trainer", "logger", "evaluate", "export")


class ConfigError(UserError, ValueError):
    """A configuration value that is not allowed; the message names key, value and what is allowed."""


@dataclass(frozen=True)
class Rule:
    allowed: str                 # completes "must be ..."
    ok: Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v


def show(v: Any) -> str:
    """A value as the user would type it on the command line."""
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def one_of(*values: Any) -> Rule:
    return Rule("one of " + ", ".join(map(show, values)),
                lambda v: any(type(v) is type(a) and v == a for a in values))


def integer(lo: int | None = None) -> Rule:
    return Rule("an integer" + (f" >= {lo}" if lo is not None else ""),
                lambda v: _is_int(v) and (lo is None or v >= lo))


def number(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Rule:
    if hi is None:
        return Rule(f"a number {'>' if lo_open else '>='} {lo:g}",
                    lambda v: _is_num(v) and (v > lo if lo_open else v >= lo))
    words = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return Rule(words, lambda v: _is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))


def optional(rule: Rule) -> Rule:
    return Rule(f"null or {rule.allowed}", lambda v: v is None or rule.ok(v))


BOOL = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")
POSITIVE = number(0, lo_open=True)
FRACTION = number(0, 1, hi_open=True)
ACTIVE = Rule("[start, stop] with 0 <= start < stop <= 1",
              lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(map(_is_num, v)) and 0 <= v[0] < v[1] <= 1)
DEVICE = Rule("auto, cpu, cuda or cuda:N",
              lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) is not None)

# `*` matches every key of a mapping (variant names, loss names, the two optimisers).
RULES: dict[str, Rule] = {
    "seed": integer(),
    "degradation.scale": one_of(*SCALES),
    "degradation.seed": integer(),
    "data.source": one_of("embedded", "folder"),
    "data.channels": one_of(1, 3),
    "data.split.seed": integer(),
    "data.split.val_fraction": FRACTION,
    "data.split.test_fraction": FRACTION,
    "data.on_bad_image": one_of("skip", "fail"),
    "data.max_pixels": integer(1),
    "data.min_side": integer(1),
    "data.out_dir": TEXT,
    "data.workers": optional(integer(0)),
    "datamodule.patch_size": integer(1),
    "datamodule.batch_size": integer(1),
    "datamodule.num_workers": integer(0),
    "datamodule.val_max_side": integer(1),
    "datamodule.min_detail": number(0),
    "datamodule.detail_tries": integer(1),
    "trainer.max_steps": integer(1),
    "trainer.val_check_interval": integer(1),
    "trainer.log_every_n_steps": integer(1),
    "trainer.gradient_clip_val": optional(POSITIVE),
    "trainer.num_nodes": integer(1),
    "trainer.accelerator": one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "trainer.precision": one_of(*PRECISIONS),
    "trainer.deterministic": BOOL,
    "trainer.channels_last": BOOL,
    "trainer.compile": BOOL,
    "trainer.threads": optional(integer(1)),
    "trainer.time_budget_s": optional(POSITIVE),
    "trainer.resume": TEXT,
    "logger.experiment": TEXT,
    "logger.connect_timeout_s": POSITIVE,
    "logger.image_every_n_epochs": integer(1),
    "nets.*.features": integer(1),
    "nets.*.latent": integer(1),
    "models.*.net.features": integer(1),
    "models.*.net.latent": integer(1),
    "models.*.net.noise_channels": integer(1),
    # Switches a net's constructor takes as truthy: a typo'd value ("ture", "maybe") would turn them on.
    "models.*.net.learnable_skip": BOOL,
    "models.*.net.rep": BOOL,
    "models.*.net.zero_last": BOOL,
    "models.*.net.upsampler": one_of(*UPSAMPLERS),
    "models.*.*.optimizer.lr": POSITIVE,
    "models.*.*.schedule.kind": one_of(*SCHEDULE_KINDS),
    "models.*.*.schedule.warmup_steps": integer(0),
    "models.*.*.schedule.min_lr_ratio": number(0, 1),
    "models.*.*.schedule.step_size": integer(1),
    "models.*.*.schedule.gamma": POSITIVE,
    "models.*.losses.*.weight": number(0),
    "models.*.losses.*.active": ACTIVE,
    "models.*.losses.*.gan_type": one_of(*GAN_TYPES),
    "models.*.losses.*.window": integer(1),       # BandEnergyLoss
    "models.*.losses.*.octaves": integer(1),      # StructureTensorLoss
    "models.*.losses.*.luma_weight": number(0, 1),  # L1Loss, MSELoss, CharbonnierLoss
    "models.*.ema_decay": number(0, 1, hi_open=True),
    "models.*.d_warmup_steps": integer(0),
    "models.*.psnr_share": number(0, 1),
    "models.*.kl_warmup_steps": integer(0),
    "models.*.new_lr_scale": POSITIVE,
    "models.*.reg_every": integer(1),
    "evaluate.split": one_of("train", "val", "test"),
    "evaluate.on_missing_benchmark": one_of("warn", "fail"),
    "evaluate.crop_size": integer(1),
    "evaluate.panel_size": integer(1),
    "evaluate.device": DEVICE,
    "evaluate.tile": integer(0),
    "evaluate.tile_overlap": integer(0),
    "evaluate.threads": integer(0),
    "evaluate.mlflow": BOOL,
    "evaluate.perceptual_min_gain_db": Rule("a number", _is_num),
    "evaluate.uncertainty.samples": integer(2),
    "evaluate.uncertainty.seed": integer(0),
    "export.opset": integer(7),
    "export.test_images": optional(integer(1)),
    "export.calibration.method": one_of(*CALIBRATION_METHODS),
    "export.calibration.patches": integer(1),
    "export.calibration.patch_size": integer(1),
    "export.speed.repeats": integer(1),
    "export.speed.warmup": integer(0),
    "export.register": BOOL,
    "export.sampler.samples": integer(1),
    "export.sampler.min_margin_db": number(-100.0),
}


def is_per_variant(value: Any) -> bool:
    return isinstance(value, Mapping) and "default" in value


def for_variant(value: Any, variant: str) -> Any:
    """A shared trainer/datamodule value as `variant` sees it: its own entry, else `default`."""
    return value.get(variant, value["default"]) if is_per_variant(value) else value


def _find(node: Any, parts: list[str], prefix: str) -> Iterator[tuple[str, Any]]:
    if not parts:
        yield prefix, node
        return
    if not isinstance(node, Mapping):
        return
    head, rest = parts[0], parts[1:]
    keys = [k for k in node if isinstance(node[k], Mapping) or not rest] if head == "*" else [head]
    for k in keys:
        if k in node:
            yield from _find(node[k], rest, f"{prefix}.{k}" if prefix else str(k))


def _values(cfg: Mapping, pattern: str) -> Iterator[tuple[str, Any]]:
    """(key, value) for every key matching `pattern`; a per-variant mapping yields each entry."""
    for key, value in _find(cfg, pattern.split("."), ""):
        if pattern.split(".")[0] in PER_VARIANT_GROUPS and is_per_variant(value):
            yield from ((f"{key}.{name}", v) for name, v in value.items())
        else:
            yield key, value


def problems(cfg: Mapping) -> list[str]:
    """Every violation in a plain (resolved) config, one short sentence each."""
    out: list[str] = []
    models = cfg.get("models") if isinstance(cfg.get("models"), Mapping) else None
    for group in (*GROUPS, *(f"models.{m}" for m in models or ())):
        node = cfg
        for part in group.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None and not isinstance(node, Mapping):
            out.append(f"{group}={show(node)} selects a config group, which only composing conf/ can do: "
                       f"`gensr params {group}={show(node)}` or `dvc exp run -S {group}={show(node)}`")
    if out:
        return out
    for pattern, rule in RULES.items():
        out += [f"{key}={show(v)}: must be {rule.allowed}" for key, v in _values(cfg, pattern) if not rule.ok(v)]
    return out + _cross_checks(cfg, models)


def _cross_checks(cfg: Mapping, models: Mapping | None) -> list[str]:
    out: list[str] = []
    data, split = cfg.get("data") or {}, (cfg.get("data") or {}).get("split") or {}
    if data.get("source") == "folder" and data.get("folder") in (None, "", "???"):
        out.append("data.folder is not set, and data.source=folder needs it: add data.folder=/path/to/photos")
    fracs = [split.get(k) for k in ("val_fraction", "test_fraction")]
    if not split.get("lists") and all(FRACTION.ok(f) for f in fracs) and sum(fracs) >= 1:
        out.append(f"data.split.val_fraction + data.split.test_fraction = {sum(fracs):g}: must be < 1 "
                   "(some photos must be left to train on)")
    names = list(models or ())
    for group in PER_VARIANT_GROUPS:
        for key, value in (cfg.get(group) or {}).items():
            extra = sorted(set(value) - {"default", *names}) if is_per_variant(value) and models is not None else []
            if extra:
                out.append(f"{group}.{key} has entries {', '.join(extra)}: per-variant keys must be default or "
                           f"a variant of models ({', '.join(names)})")
    for name, model in (models or {}).items():
        share = model.get("psnr_share") if isinstance(model, Mapping) else None
        if _is_num(share) and share > 0 and not model.get("init_from"):
            out.append(f"models.{name}.psnr_share={show(share)}: blends the generator with the model it was "
                       f"fine-tuned from, but models.{name}.init_from is null: set psnr_share=0 or an init_from")
        for group in PER_VARIANT_GROUPS:
            if isinstance(model, Mapping) and group in model:
                out.append(f"models.{name}.{group}: a variant's own {group} settings go in the shared key, "
                           f"{group}.<key>={{default: ..., {name}: ...}}, so that setting {group}.<key> "
                           "on the command line wins for every variant")
    scale = (cfg.get("degradation") or {}).get("scale")
    if scale in SCALES:
        for key, v in _values(cfg, "datamodule.patch_size"):
            if _is_int(v) and v % scale:
                out.append(f"{key}={v}: must be a multiple of degradation.scale={scale}")
        for key, v in _values(cfg, "datamodule.val_max_side"):
            if _is_int(v) and v < scale:
                out.append(f"{key}={v}: must be at least degradation.scale={scale}")
    variant, variants = cfg.get("variant"), cfg.get("variants")
    if models is not None and variant is not None and variant not in models:
        out.append(f"variant={show(variant)}: must be one of {', '.join(names)}")
    if variants is not None:
        if not isinstance(variants, list) or not variants:
            out.append(f"variants={show(variants)}: must be a non-empty list of variant names")
        elif models is not None and (unknown := [v for v in variants if v not in models]):
            out.append(f"variants: {', '.join(map(show, unknown))} not in models ({', '.join(names)})")
    return out + _train_from_checks(cfg.get("train_from"), models)


TRAIN_SCRIPT = "pipelines/train.py"  # what a from-scratch variant's train stage names in train_from


def _train_from_checks(train_from: Any, models: Mapping | None) -> list[str]:
    """`train_from` (dvc.yaml's train stages) must agree with each variant's `init_from`."""
    if not isinstance(train_from, Mapping) or models is None:
        return [] if train_from is None else [f"train_from={show(train_from)}: must map variants to files"]
    out = []
    for v, start in train_from.items():
        init = (models.get(v) or {}).get("init_from") if v in models else None
        if v not in models:
            out.append(f"train_from.{v}: not a variant of models ({', '.join(models)})")
        elif init and start != init:
            out.append(f"train_from.{v}={show(start)}: must be models.{v}.init_from ({init}), the model it starts from")
        elif not init and start != TRAIN_SCRIPT:
            out.append(f"train_from.{v}={show(start)}: models.{v}.init_from is null (trained from scratch), so "
                       f"it must be {TRAIN_SCRIPT}: add train_from.{v}={TRAIN_SCRIPT}")
    return out


def require_variant(cfg: Any) -> str:
    """The variant a training run is for (`variant=<name>`), which params.yaml leaves unset."""
    variant = cfg.get("variant")
    if not variant:
        raise ConfigError(f"variant is not set: python pipelines/train.py variant=<one of {', '.join(cfg.models)}>")
    return str(variant)


def validate(cfg: Any) -> None:
    """Raise ConfigError listing every violation in `cfg` (a DictConfig or a plain mapping)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(cfg, DictConfig):
        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{getattr(e, 'full_key', '') or 'config'}: {str(e).splitlines()[0]}") from None
    found = problems(cfg)
    if found:
        raise ConfigError("; ".join(found))
