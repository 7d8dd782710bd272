"""Configuration: `conf/` (Hydra groups) is the source, `params.yaml` is its composed, resolved dump.

`dvc exp run -S key=value` composes `conf/` with the override into params.yaml (DVC's Hydra
composition, enabled in .dvc/config); `make params` does the same through `write_params`, with the
very function DVC uses, so the two can never drift. Stages read params.yaml and accept Hydra
overrides on top of it (`python pipelines/prepare.py degradation.scale=4`).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gensr.errors import UserError, one_line
from gensr.schema import ConfigError, validate

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"


def repo_root(start: Path | None = None) -> Path:
    """The project folder: the nearest ancestor of `start` (default: cwd) holding dvc.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / CONF_DIR).is_dir():
            return folder
    raise UserError(f"no gensr project (dvc.yaml + conf/) at or above {here}: run this inside the checkout")


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


def _shared_node_hint(key: str, overrides: Sequence[str], conf_dir: Path) -> str | None:
    """What to set instead of `key` when it lies under a node that conf/ makes another node's value
    (`models.gan.net: ${models.ae_res.net}`), which Hydra cannot override key by key."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    given = [o for o in overrides if o.split("=")[0] == key]
    if not given:
        return None
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=[o for o in overrides if o not in given])
    except Exception:  # only a courtesy: any other problem keeps Hydra's own message
        return None
    tree, target, shared = OmegaConf.to_container(cfg, resolve=False), key, None
    for _ in range(8):  # follow ${a} -> ${b} -> the node that holds the value
        parts, node = target.split("."), tree
        for i in range(len(parts) - 1):
            node = node.get(parts[i]) if isinstance(node, dict) else None
            if isinstance(node, str) and node.startswith("${") and node.endswith("}"):
                shared = shared or f"{'.'.join(parts[:i + 1])} is {node}"
                target = ".".join([node[2:-1], *parts[i + 1:]])
                break
        else:
            break
    if not shared:
        return None
    return (f"{key} cannot be set on its own: {shared} in conf/ (it follows that node); "
            f"set {target}={given[-1].split('=', 1)[1]} instead")


@contextmanager
def _hydra_errors(overrides: Sequence[str], conf_dir: Path | None = None) -> Iterator[None]:
    """Hydra's composition errors (an unknown key or group option, a malformed override) as one line."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    try:
        yield
    except OverrideParseException as e:  # Hydra's message does not say which override
        raise ConfigError(f"cannot parse the overrides `{' '.join(overrides)}`: {str(e).splitlines()[0]}") from None
    except MissingConfigException as e:
        group = os.path.dirname(e.missing_cfg_file or "")
        if not (group and e.options):
            raise ConfigError(one_line(str(e).split("\n\n")[0])) from None
        given = [o for o in overrides if o.split("=")[0].lstrip("+~").split("@")[0] == group]
        raise ConfigError(f"{given[-1] if given else group}: no such option in conf/{group}/; "
                          f"available: {', '.join(sorted(e.options))}") from None
    except HydraException as e:
        message = one_line(e)
        key = message.split("'")[1] if message.startswith("Could not override '") else None
        hint = key and conf_dir and _shared_node_hint(key, overrides, conf_dir)
        raise ConfigError(hint or message) from None


def compose(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides, resolved (what params.yaml holds), unvalidated
    (tests compose deliberately bad values to exercise a stage's own checks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    conf_dir = (root or repo_root()) / CONF_DIR
    with _hydra_errors(overrides, conf_dir), initialize_config_dir(str(conf_dir), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def write_params(overrides: Sequence[str] = (), root: Path | None = None) -> Path:
    """Regenerate params.yaml from conf/ with DVC's own composer (identical to `dvc exp run`); an
    invalid result is refused (gensr.schema) and params.yaml is left as it was."""
    from dvc.utils.hydra import compose_and_dump

    root = root or repo_root()
    out = root / PARAMS_FILE
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with _hydra_errors(overrides, root / CONF_DIR):
            compose_and_dump(tmp, str(root / CONF_DIR), None, "config", str(root), list(overrides))
        validate(OmegaConf.load(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out


def load_stage_config(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """params.yaml plus Hydra overrides from a stage's command line, validated (gensr.schema); no
    output folders, no chdir. Overrides replace params.yaml's values, per-variant mappings included."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    root = root or repo_root()
    if not (root / PARAMS_FILE).is_file():
        raise UserError(f"{root / PARAMS_FILE} is missing: run `make params` (or `gensr params`) first")
    with _hydra_errors(overrides), initialize_config_dir(str(root), version_base="1.3"):
        cfg = hydra_compose(config_name=Path(PARAMS_FILE).stem, overrides=list(overrides))
    validate(cfg)  # first: it reports an override's broken interpolation as one line
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
