"""Configuration: `conf/` (Hydra groups) is the source, `params.yaml` is its composed, resolved dump.

`dvc exp run -S key=value` composes `conf/` with the override into params.yaml (DVC's Hydra
composition, enabled in .dvc/config); `make params` does the same through `write_params`, with the
very function DVC uses, so the two can never drift. Stages read params.yaml and accept Hydra
overrides on top of it (`python pipelines/prepare.py degradation.scale=4`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"


def repo_root(start: Path | None = None) -> Path:
    """The project folder: the nearest ancestor of `start` (default: cwd) holding dvc.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / CONF_DIR).is_dir():
            return folder
    raise FileNotFoundError(f"no gensr project (dvc.yaml + conf/) at or above {here}")


def main_repo_root(root: Path | None = None) -> Path:
    """The user's checkout, also from inside a queued DVC experiment.

    `dvc exp run --queue` runs each experiment in a temporary copy under `.dvc/tmp/exps/`;
    state that must be shared across experiments (the MLflow database) lives in the checkout
    that owns that `.dvc` folder, not in the copy.
    """
    root = (root or repo_root()).resolve()
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def compose(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides, resolved (what params.yaml holds)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf_dir = (root or repo_root()) / CONF_DIR
    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def write_params(overrides: Sequence[str] = (), root: Path | None = None) -> Path:
    """Regenerate params.yaml from conf/ with DVC's own composer (identical to `dvc exp run`)."""
    from dvc.utils.hydra import compose_and_dump

    root = root or repo_root()
    out = root / PARAMS_FILE
    tmp = out.with_name(f".{out.name}.tmp")
    compose_and_dump(tmp, str(root / CONF_DIR), None, "config", str(root), list(overrides))
    os.replace(tmp, out)
    return out


def load_stage_config(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """params.yaml plus Hydra overrides from a stage's command line; no output folders, no chdir."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    root = root or repo_root()
    if not (root / PARAMS_FILE).is_file():
        raise FileNotFoundError(f"{root / PARAMS_FILE} is missing: run `make params` first")
    with initialize_config_dir(str(root), version_base="1.3"):
        cfg = hydra_compose(config_name=Path(PARAMS_FILE).stem, overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI when set (a server), else SQLite at the user's checkout root.

    The path is absolute so that queued experiments, which run in temporary copies of the repo,
    all land in the same database instead of one per copy.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{main_repo_root(root) / 'mlflow.db'}"
