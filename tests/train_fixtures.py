"""Helpers for the training and DVC tests: a tiny gensr project (conf/, params.yaml, a few small
prepared pairs) in a temp folder (the `project` fixture in conftest.py copies one), Hydra overrides
that shrink every variant to a toy size, and a git + DVC checkout with a toy profile."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _photo(name: str, size: int) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    h, w = img.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[y : y + size, x : x + size, :3])


def write_pairs(prepared: Path, scale: int = 2) -> None:
    """HR crops of bundled photos; LR by Pillow's box filter (any downscale will do for tests)."""
    splits = {"train": [("astronaut", 96), ("coffee", 96), ("chelsea", 96)], "val": [("rocket", 64), ("astronaut", 64)]}
    for split, items in splits.items():
        names = []
        for name, size in items:
            hr = _photo(name, size)
            lr = np.asarray(Image.fromarray(hr).resize((size // scale, size // scale), Image.BOX))
            for kind, arr in (("hr", hr), ("lr", lr)):
                (prepared / split / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(prepared / split / kind / f"{name}.png")
            names.append(name)
        (prepared / f"{split}.json").write_text(json.dumps({"split": split, "names": names}))


def make_project(dest: Path) -> Path:
    """conf/ + dvc.yaml + pipelines/train.py + params.yaml + data/prepared in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "conf", dest / "conf")
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    (dest / "pipelines").mkdir()
    shutil.copy(ROOT / "pipelines" / "train.py", dest / "pipelines" / "train.py")
    from gensr.config import write_params

    write_params([], root=dest)
    write_pairs(dest / "data" / "prepared")
    return dest


def extra_model(name: str) -> list[str]:
    """conf/model/<name>.yaml that is no default variant (e.g. vae_res, which profiles swap in):
    the override that adds it to `models` under its own name."""
    from gensr.config import compose

    return [] if name in compose([], root=ROOT).models else [f"+model@models.{name}={name}"]


def tiny_overrides(variant: str, steps: int = 4, interval: int = 2) -> list[str]:
    """Toy nets, 32-pixel patches, a few steps: seconds per run on a CPU."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from gensr.config import compose
    from gensr.schema import ConfigError

    extra = extra_model(variant)
    cfg = compose(extra, root=ROOT)
    m = cfg.models[variant]
    out = [*extra, f"variant={variant}"]
    sizes = {"net": {"features": 8, "n_blocks": 1, "latent": 8, "depth": 1},
             "discriminator": {"features": 8, "depth": 2, "hidden": 16}}
    # A net that follows another's (gan's `${models.ae_res.net}`), which Hydra will not override key
    # by key: then shrink the net it follows.
    owners = {"net": f"models.{variant}.net", "discriminator": f"models.{variant}.discriminator"}
    try:
        compose([*extra, f"models.{variant}.net._target_={m.net._target_}"], root=ROOT)
    except ConfigError:  # the raw composition still holds the `${...}` it follows
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            raw = OmegaConf.to_container(hydra_compose(config_name="config", overrides=extra), resolve=False)
        owners["net"] = raw["models"][variant]["net"][2:-1]
    for part, keys in sizes.items():
        if part in m:
            out += [f"{owners[part]}.{k}={v}" for k, v in keys.items() if k in m[part]]
    for group in ("trainer", "datamodule"):  # drop the variant's own quick-profile sizes
        if m.get(group):
            out.append(f"~models.{variant}.{group}")
    out += [f"trainer.max_steps={steps}", f"trainer.val_check_interval={interval}", "trainer.threads=1",
            "datamodule.patch_size=32", "datamodule.batch_size=4", "datamodule.num_workers=0",
            "datamodule.val_max_side=48", "logger.image_every_n_epochs=1", "trainer.log_every_n_steps=1"]
    if "init_from" in m:  # from scratch: the toy run has no trained model to start from
        out.append(f"models.{variant}.init_from=null")
        if variant in cfg.get("train_from", {}):
            out.append(f"train_from.{variant}=pipelines/train.py")
    if "d_warmup_steps" in m:  # adversarial terms on from the first step
        out.append(f"models.{variant}.d_warmup_steps=0")
    if "kl_warmup_steps" in m:
        out.append(f"models.{variant}.kl_warmup_steps=2")
    return out


def use_project(template: Path, dest: Path, monkeypatch) -> Path:
    """A fresh copy of a template project, as the cwd (gensr.config.repo_root finds it)."""
    shutil.copytree(template, dest)
    monkeypatch.chdir(dest)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return dest


def run_train(project: Path, overrides: list[str], env: dict | None = None, timeout: float = 240):
    """`python pipelines/train.py ...` in the project, as DVC runs it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if not (env and "MLFLOW_TRACKING_URI" in env):
        full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([PY, "pipelines/train.py", *overrides], cwd=project, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


BIN = Path(sys.executable).parent  # this venv's gensr and dvc, also for the stages DVC runs
TINY_PROFILE = """# @package _global_
datamodule: {patch_size: 32, batch_size: 4, num_workers: 0, val_max_side: 48}
trainer: {max_steps: 4, val_check_interval: 2, log_every_n_steps: 1, threads: 1}
nets:
  conv_ae: {features: 8, latent: 8, depth: 1}
"""


def run_cmd(cmd: list, cwd: Path, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """A command with this venv first on PATH and no outside MLflow store; `check` asserts success."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def dvc_project(dest: Path, profile: str = TINY_PROFILE) -> Path:
    """A git + DVC checkout of the project (code, conf/, dvc.yaml) whose quick profile is `profile`."""
    dest.mkdir()
    for item in ("conf", "src", "pipelines", ".dvc"):
        shutil.copytree(ROOT / item, dest / item, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache"))
    for item in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / item, dest / item)
    (dest / "conf" / "profile" / "quick.yaml").write_text(profile)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    run_cmd(["git", "init", "-q"], dest)
    run_cmd([BIN / "gensr", "params"], dest)
    run_cmd([*git, "add", "-A"], dest)
    run_cmd([*git, "commit", "-qm", "init"], dest)
    return dest
