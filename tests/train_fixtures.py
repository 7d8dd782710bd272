"""Shared helpers for tests/test_train_*.py: a tiny gensr project (conf/, params.yaml, a few small
prepared pairs) in a temp folder, and Hydra overrides that shrink every variant to a toy size."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
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
    from gensr.config import compose
    from gensr.schema import ConfigError

    extra = extra_model(variant)
    cfg = compose(extra, root=ROOT)
    m = cfg.models[variant]
    out = [*extra, f"variant={variant}"]
    sizes = {"net": {"features": 8, "n_blocks": 1, "latent": 8, "depth": 1},
             "discriminator": {"features": 8, "depth": 2, "hidden": 16}}
    # A fine-tune's net may *be* ae_res's (`net: ${models.ae_res.net}`, which Hydra will not
    # override key by key): then shrink ae_res's net.
    owners = {"net": variant, "discriminator": variant}
    try:
        compose([*extra, f"models.{variant}.net._target_={m.net._target_}"], root=ROOT)
    except ConfigError:
        owners["net"] = "ae_res"
    for part, keys in sizes.items():
        if part in m:
            out += [f"models.{owners[part]}.{part}.{k}={v}" for k, v in keys.items() if k in m[part]]
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


@pytest.fixture(scope="session")
def project_template(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("gensr_project"))


@pytest.fixture
def project(project_template, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the template project, as the cwd (gensr.config.repo_root finds it)."""
    dest = tmp_path / "proj"
    shutil.copytree(project_template, dest)
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
