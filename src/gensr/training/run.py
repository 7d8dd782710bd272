"""Train one variant: config -> datamodule, LightningModule, Trainer -> models/<v>/ + checkpoints/<v>/.

`train(cfg)` is what `pipelines/train.py variant=<name>` runs. A key of the shared `trainer` and
`datamodule` groups may differ per variant (`trainer.max_steps: {default: 600, ae: 1500}`, see
gensr.schema); setting the key on the command line sets it for every variant. `trainer.max_steps`
counts training iterations (batches; one iteration of GAN/AAE steps both optimisers);
`trainer.val_check_interval` iterations form one epoch, each ending with validation and a
checkpoint (best by val PSNR-Y, and last). With `trainer.time_budget_s` set, max_steps is only the
first plan: gensr.training.budget re-plans the step count so the run's schedule ends inside the budget.

Resume (`trainer.resume`): `auto` continues checkpoints/<v>/last.ckpt when it belongs to this
variant/scale/channels, was written with the same config hash and is unfinished, else it starts
fresh and says why; `never` always starts fresh; a path resumes that checkpoint and refuses one
of another variant/scale/channels with CheckpointMismatchError.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from gensr.checkpoint import CheckpointMismatchError
from gensr.config import repo_root
from gensr.errors import UserError
from gensr.io import exclusive_output, sha256_file
from gensr.schema import for_variant, require_variant, validate
from gensr.tracking import run_tags
from gensr.training import mlflow_logging as ml
from gensr.training.base import plain
from gensr.training.outputs import FinishedRun, write_outputs

# trainer-group keys gensr interprets itself; everything else goes to lightning.Trainer as is
OWN_KEYS = ("max_steps", "val_check_interval", "gradient_clip_val", "resume", "channels_last", "compile", "threads",
            "time_budget_s")
# keys that do not change what is computed: excluded from the config hash (resume stays allowed)
NOT_HASHED = {"resume", "log_every_n_steps", "enable_progress_bar", "threads", "num_sanity_val_steps", "num_workers"}


def _is_main_process() -> bool:
    """Rank 0 before the Trainer exists (DDP children get LOCAL_RANK / NODE_RANK / RANK)."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def say(msg: str) -> None:
    if _is_main_process():
        print(msg, flush=True)


def effective_config(cfg: DictConfig) -> dict[str, Any]:
    """The variant's view of the config, validated (gensr.schema); a per-variant value of the shared
    trainer/datamodule groups (`{default: .., <variant>: ..}`) resolved to the variant's own."""
    validate(cfg)
    variant = require_variant(cfg)
    model = plain(cfg.models[variant])
    trainer = {k: for_variant(v, variant) for k, v in plain(cfg.trainer).items()}
    datamodule = {k: for_variant(v, variant) for k, v in plain(cfg.datamodule).items()}
    max_steps = int(trainer["max_steps"])
    per_epoch = max(1, min(int(trainer["val_check_interval"]), max_steps))
    epochs = math.ceil(max_steps / per_epoch)
    return {
        "variant": variant, "seed": int(cfg.seed), "model": model, "trainer": trainer, "datamodule": datamodule,
        "data": plain(cfg.data), "degradation": plain(cfg.degradation), "logger": plain(cfg.logger),
        "steps_per_epoch": per_epoch, "epochs": epochs, "total_steps": epochs * per_epoch,
    }


def config_hash(eff: dict[str, Any], manifest: str, init_digest: str | None = None) -> str:
    """What a checkpoint must match to be resumed: config, data and, for a fine-tune, the *content*
    of the model it starts from (a retrained ae_res under the same path invalidates gan's last.ckpt)."""
    ident = {
        "variant": eff["variant"], "seed": eff["seed"], "model": eff["model"], "degradation": eff["degradation"],
        "trainer": {k: v for k, v in eff["trainer"].items() if k not in NOT_HASHED},
        "datamodule": {k: v for k, v in eff["datamodule"].items() if k not in NOT_HASHED},
        "manifest": manifest, "init": init_digest,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def init_model(model: dict[str, Any], root: Path, variant: str) -> tuple[Path | None, str | None]:
    """The model file a fine-tune starts from (`init_from`, relative to `root`) and its sha256."""
    init = model.get("init_from")
    if not init:
        return None, None
    path = Path(init) if Path(init).is_absolute() else root / init
    if not path.is_file():
        raise UserError(f"models.{variant}.init_from: {path} does not exist "
                        "(train the variant it names first: `dvc repro` does, through train_from)")
    return path, sha256_file(path)


def resume_decision(root: Path, ckpt_dir: Path, eff: dict[str, Any], chash: str) -> tuple[Path | None, str | None]:
    """(checkpoint to resume, its MLflow run id) or (None, None) to start fresh; says why."""
    setting = str(eff["trainer"].get("resume", "auto"))
    if setting == "never":
        return None, None
    explicit = setting != "auto"
    path = (root / setting) if explicit else ckpt_dir / "last.ckpt"
    if not path.is_file():
        if explicit:
            raise UserError(f"trainer.resume={setting}: {path} does not exist")
        return None, None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        if explicit:
            raise UserError(f"trainer.resume={setting}: {path} is not a loadable checkpoint (truncated or corrupt: "
                            f"{str(e).splitlines()[0]})") from e
        say(f"[{eff['variant']}] not resuming {path}: unreadable ({e}); starting fresh")
        return None, None
    info = ck.get("gensr") if isinstance(ck, dict) else None
    want = {"variant": eff["variant"], "scale": eff["degradation"]["scale"], "channels": eff["data"]["channels"]}
    if not info:
        problem = "it is not a gensr training checkpoint"
    else:
        diffs = [f"{k}={info.get(k)!r} (this run: {v!r})" for k, v in want.items() if info.get(k) != v]
        problem = ("it is a checkpoint of " + ", ".join(diffs)) if diffs else ""
    if problem:
        if explicit:
            raise CheckpointMismatchError(f"{path}: refusing to resume: {problem}")
        say(f"[{eff['variant']}] not resuming {path}: {problem}; starting fresh")
        return None, None
    if info.get("config_hash") != chash:
        if explicit:
            say(f"[{eff['variant']}] note: {path} was written with another config "
                f"(hash {info.get('config_hash')}, now {chash}); resuming it as asked")
        else:
            say(f"[{eff['variant']}] not resuming {path}: the config changed since it was written "
                f"(config hash {info.get('config_hash')} -> {chash}); starting fresh")
            return None, None
    if int(info.get("iteration", 0)) >= int(info.get("total_steps", 0)):
        say(f"[{eff['variant']}] {path} is of a finished run ({info.get('iteration')} steps); starting fresh")
        return None, None
    say(f"[{eff['variant']}] resuming {path} at step {info.get('iteration')}/{info.get('total_steps')}")
    return path, info.get("mlflow_run_id")


def _quiet_lightning() -> None:
    """Drop console noise that says nothing about this run (ads, expected warnings)."""
    import logging
    import warnings

    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(getattr(f, "gensr", False) for f in log.filters):
        def no_ads(record: logging.LogRecord) -> bool:
            return "litlogger" not in record.getMessage()

        no_ads.gensr = True
        log.addFilter(no_ads)
    for pattern in (".*LeafSpec.*", ".*smaller than the logging interval.*", ".*exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=pattern)


def _precision(trainer_cfg: dict[str, Any]) -> str:
    prec = str(trainer_cfg.get("precision", "32-true"))
    accel = str(trainer_cfg.get("accelerator", "auto"))
    on_gpu = accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available())
    if not on_gpu and prec not in ("32-true", "32", "64-true", "64"):
        say(f"note: precision={prec} is for GPUs; using 32-true on the CPU")
        return "32-true"
    return prec


def build_datamodule(eff: dict[str, Any], prepared: Path):
    from gensr.training.datamodule import SRDataModule

    dmc = eff["datamodule"]
    return SRDataModule(
        prepared, int(eff["degradation"]["scale"]), int(eff["data"]["channels"]), patch_size=dmc["patch_size"],
        batch_size=dmc["batch_size"], num_workers=dmc.get("num_workers", 1), val_max_side=dmc["val_max_side"],
        steps_per_epoch=eff["steps_per_epoch"], seed=eff["seed"],
        min_detail=dmc.get("min_detail", 0.0), detail_tries=dmc.get("detail_tries", 8),
    )


def build_module(eff: dict[str, Any]):
    """The variant's LightningModule (its `_target_`), with our own errors unwrapped from Hydra's."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    tr = eff["trainer"]
    try:
        module = instantiate(
            eff["model"], _recursive_=False, variant=eff["variant"], scale=int(eff["degradation"]["scale"]),
            channels=int(eff["data"]["channels"]), seed=eff["seed"], total_steps=eff["total_steps"],
            clip_val=tr.get("gradient_clip_val"), channels_last=bool(tr.get("channels_last", False)),
            compile=bool(tr.get("compile", False)),
        )
    except InstantiationException as e:  # surface our own clear errors, not Hydra's wrapper
        if isinstance(e.__cause__, (UserError, FileNotFoundError, ValueError, TypeError)):
            raise e.__cause__ from None
        raise
    if tr.get("channels_last"):
        module = module.to(memory_format=torch.channels_last)
    return module


def train(cfg: DictConfig, extra_callbacks: list | None = None, root: Path | None = None,
          clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """`root` (default: the checkout) holds data.out_dir, models/ and checkpoints/; bench/quality.py
    points it at a scratch folder so a benchmark never touches the pipeline's outputs. `clock`: what
    `trainer.time_budget_s` is measured with (default time.monotonic; tests pass a fake one)."""
    root = Path(root) if root is not None else repo_root()
    eff = effective_config(cfg)
    variant = eff["variant"]
    # Two trainings of one variant into one folder would interleave their checkpoints: the second is
    # refused. Rank 0 holds the lock for a DDP run (its other ranks share rank 0's folders).
    guard = (exclusive_output(root / "checkpoints" / variant, f"training {variant}") if _is_main_process()
             else contextlib.nullcontext())
    with guard:
        return _train(cfg, eff, root, extra_callbacks, clock)


def _train(cfg: DictConfig, eff: dict[str, Any], root: Path, extra_callbacks: list | None,
           clock: Callable[[], float] | None) -> dict[str, Any]:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from gensr.training.callbacks import AtomicCheckpointIO, History, ImageGrid, RunInfo
    from gensr.training.ema import EMA
    from gensr.training.timing import PhaseTimer

    t0 = time.monotonic()
    _quiet_lightning()
    variant, tr, dmc, model = eff["variant"], eff["trainer"], eff["datamodule"], eff["model"]
    scale, channels = int(eff["degradation"]["scale"]), int(eff["data"]["channels"])
    prepared = root / eff["data"]["out_dir"]
    models_dir, ckpt_dir = root / "models" / variant, root / "checkpoints" / variant
    manifest = ml.manifest_hash(prepared)
    init_path, init_digest = init_model(model, root, variant)
    chash = config_hash(eff, manifest, init_digest)
    if tr.get("threads"):
        torch.set_num_threads(int(tr["threads"]))
    L.seed_everything(eff["seed"], workers=True, verbose=False)

    ckpt_path, run_id = resume_decision(root, ckpt_dir, eff, chash)

    if init_path is not None:
        model["init_from"] = str(init_path)  # resolved against `root`, not the process's cwd
    # Data and model first: a bad file or init model is refused before an MLflow run exists.
    datamodule = build_datamodule(eff, prepared)
    module = build_module(eff)
    manual = not module.automatic_optimization

    log_cfg = eff["logger"]
    uri = ml.prepare_tracking(log_cfg["experiment"], float(log_cfg.get("connect_timeout_s", 20)), root)
    run_id = ml.existing_run(uri, run_id)
    tags = {**run_tags("train", variant), "git_commit": ml.git_commit(root),
            "data_manifest_hash": manifest, "config_hash": chash}
    if init_path is not None:
        tags.update({"init_from": str(init_path), "init_from_sha256": init_digest})
    logger = ml.make_logger(uri, log_cfg["experiment"], variant, run_id, tags)

    run_info = RunInfo({"variant": variant, "scale": scale, "channels": channels, "config_hash": chash,
                        "total_steps": eff["total_steps"]})
    ema = EMA(float(model.get("ema_decay", 0.0) or 0.0))
    history = History(models_dir / "history.csv", variant, eff["total_steps"], run_info)
    # Two writers: Lightning's save_last only fires when a top-k checkpoint was saved that epoch.
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/psnr_y", mode="max", save_top_k=1,
                           every_n_epochs=1, enable_version_counter=False, auto_insert_metric_name=False)
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False, auto_insert_metric_name=False)
    params = {"variant": variant, "seed": eff["seed"], **ml.flatten(model, "model."),
              **ml.flatten(tr, "trainer."), **ml.flatten(dmc, "datamodule."),
              **ml.flatten(eff["data"], "data."), **ml.flatten(eff["degradation"], "degradation."),
              "total_steps": eff["total_steps"], "steps_per_epoch": eff["steps_per_epoch"]}
    grid = ImageGrid(log_cfg.get("image_every_n_epochs", 1))
    run_setup = ml.RunSetup(params, tags, OmegaConf.to_yaml(cfg), ml.PreparedData(prepared, scale, manifest))
    # First: its hooks open and close the optimisation / loader / validation phases (models/<v>/timings.json)
    timer = PhaseTimer({"ema": [ema], "log": [history, grid, run_setup]})
    budget = None
    if tr.get("time_budget_s"):  # the run re-plans its own step count to end inside the budget
        from gensr.training.budget import TimeBudget

        budget = TimeBudget(float(tr["time_budget_s"]), eff["steps_per_epoch"], run_info, history,
                            now=clock or time.monotonic)
    callbacks = [timer, ema, run_info, history, grid, run_setup, *([budget] if budget else []), best, last,
                 *(extra_callbacks or [])]

    passthrough = {k: v for k, v in tr.items() if k not in OWN_KEYS}
    passthrough["precision"] = _precision(tr)
    passthrough.setdefault("enable_progress_bar", False)
    trainer = L.Trainer(
        **passthrough, max_epochs=-1 if budget else eff["epochs"], max_steps=-1, check_val_every_n_epoch=1,
        gradient_clip_val=None if manual else tr.get("gradient_clip_val"),
        logger=logger, callbacks=callbacks, default_root_dir=str(ckpt_dir), plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False, enable_model_summary=False,
    )
    n_params = sum(p.numel() for p in module.net.parameters())
    say(f"[{variant}] {type(module).__name__}: {type(module.net).__name__} {n_params / 1e6:.3f} M params, "
        f"{eff['total_steps']} steps ({eff['epochs']} x {eff['steps_per_epoch']}), batch {dmc['batch_size']}, "
        f"patch {dmc['patch_size']}, scale {scale}; MLflow {uri}")
    if budget:
        say(f"[{variant}] time budget {budget.budget_s:g} s: {eff['total_steps']} steps is the first plan; "
            "the run re-plans them from its own time per step")
    # The checkpoints of an earlier run are dropped only now that everything this one needs has
    # been built (data, model, tracking): a run that fails to start leaves them as they were.
    if ckpt_path is None and _is_main_process():
        for stale in ("last.ckpt", "best.ckpt"):
            (ckpt_dir / stale).unlink(missing_ok=True)
    with ml.ends_run(logger):  # FINISHED once the outputs are written and logged, else FAILED
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None, weights_only=True)
        if trainer.interrupted:
            raise KeyboardInterrupt(f"{variant}: training interrupted; rerun to resume from {ckpt_dir / 'last.ckpt'}")
        if not trainer.is_global_zero:
            return {}
        return write_outputs(FinishedRun(eff, module, datamodule, ema, run_info, history, timer, best, logger,
                                         chash, manifest, root, t0, budget.report(module) if budget else {}))

