"""conf/ is the one source of truth: params.yaml must be exactly its composition."""
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from gensr.config import (
    compose,
    load_stage_config,
    main_repo_root,
    tracking_uri,
    write_params,
)

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_is_the_composed_config():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    composed = OmegaConf.to_container(compose(root=ROOT))
    assert committed == composed, "params.yaml drifted from conf/: run `make params`"


def test_write_params_matches_compose(tmp_path):
    # DVC's composer (used by `make params` and `dvc exp run`) and ours agree, overrides included.
    for name in ("dvc.yaml",):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "conf").symlink_to(ROOT / "conf")
    out = write_params(["degradation.scale=4", "data.channels=1"], root=tmp_path)
    dumped = yaml.safe_load(out.read_text())
    assert dumped == OmegaConf.to_container(
        compose(["degradation.scale=4", "data.channels=1"], root=ROOT)
    )
    assert dumped["degradation"]["scale"] == 4
    # Interpolations are resolved, so DVC sees a model's scale change as a param change.
    assert all(m["net"]["scale"] == 4 for m in dumped["models"].values())
    assert all(m["net"]["channels"] == 1 for m in dumped["models"].values())


def test_every_variant_has_a_model_config():
    cfg = compose(root=ROOT)
    assert set(cfg.variants) <= set(cfg.models)
    model_files = {p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")}
    assert set(cfg.variants) <= model_files
    # The full profile swaps the backbone-sharing VAE in under the `vae` name.
    full = compose(["profile=full", "data.folder=/photos"], root=ROOT)
    assert full.models.vae.net.variational and full.models.vae.net.features == full.models.ae_res.net.features


def test_stage_config_accepts_hydra_overrides():
    cfg = load_stage_config(["degradation.scale=4", "data.workers=1"], root=ROOT)
    assert cfg.degradation.scale == 4 and cfg.data.workers == 1
    with pytest.raises(Exception, match="no_such_key"):
        load_stage_config(["no_such_key.x=1"], root=ROOT)


@pytest.mark.parametrize("profile", sorted(p.stem for p in (ROOT / "conf" / "profile").glob("*.yaml")))
def test_every_profile_composes(profile):
    cfg = compose([f"profile={profile}"], root=ROOT)
    assert cfg.variants and cfg.models


def test_queued_experiments_share_the_checkout_database(tmp_path, monkeypatch):
    checkout = tmp_path / "repo"
    copy = checkout / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    for folder in (checkout, copy):
        (folder / "conf").mkdir(parents=True, exist_ok=True)
        (folder / "dvc.yaml").write_text("stages: {}\n")
    assert main_repo_root(copy) == checkout.resolve()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(copy) == f"sqlite:///{checkout.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(copy) == "http://mlflow.example:5000"
