"""conf/ is the one source of truth: params.yaml must be exactly its composition, and a setting
given on the command line beats every profile and per-variant default."""
import os
import shutil
import subprocess
import sys
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
from gensr.schema import for_variant, is_per_variant, validate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VARIANTS = ["ae", "ae_res", "gan", "vae", "sparse_ae", "aae"]


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
def test_every_profile_composes_to_a_valid_config(profile):
    cfg = compose([f"profile={profile}", "data.folder=/photos"], root=ROOT)
    assert cfg.variants and cfg.models
    validate(cfg)


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


# --- The command line wins -------------------------------------------------------------------

def _profile_file(profile: str) -> dict:
    """A profile's own settings merged over those of the profiles it extends (its defaults list)."""
    raw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "profile" / f"{profile}.yaml"))
    base = OmegaConf.create()
    for parent in raw.pop("defaults", []):
        if isinstance(parent, str) and parent != "_self_":
            base = OmegaConf.merge(base, _profile_file(parent))
    return OmegaConf.to_container(OmegaConf.merge(base, raw))


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path, node


ALTERNATIVES = {"accelerator": "cpu", "precision": "32-true", "strategy": "ddp", "kind": "step"}


def _other(key: str, value):
    """A valid value different from `value` (None: nothing sensible to try)."""
    if is_per_variant(value):
        return max(value.values()) + 2
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 2  # keeps a patch size a multiple of the scale
    if isinstance(value, float):
        return value / 2
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return [v / 2 for v in value]
    return ALTERNATIVES.get(key) if isinstance(value, str) and ALTERNATIVES.get(key) != value else None


def _hydra(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"[{','.join(map(str, value))}]" if isinstance(value, list) else str(value)


@pytest.mark.parametrize("profile", ["quick", "full", "gpu"])
def test_command_line_beats_every_profile_and_per_variant_default(profile):
    """For every key a profile sets, for its shared trainer/datamodule keys (per-variant mappings
    included), each architecture's net (`nets`) and each variant's own block: an override of that
    key wins for the variant(s)."""
    from gensr.training.run import effective_config

    own = _profile_file(profile)
    shared, per_model = {}, {}
    for group in ("trainer", "datamodule"):
        for key, value in (own.get(group) or {}).items():
            if (new := _other(key, value)) is not None:
                shared[(group, key)] = new
    for variant, block in (own.get("models") or {}).items():
        for path, value in _leaves(block):
            if path[-1] != "_target_" and (new := _other(path[-1], value)) is not None:
                per_model[(variant, path)] = new
    per_net = {(arch, k): _other(k, v) for arch, block in (own.get("nets") or {}).items() for k, v in block.items()}
    per_variant = [k for (g, k) in shared if is_per_variant(own[g][k])]
    assert profile != "quick" or "max_steps" in per_variant  # the case of the issue is covered
    assert per_model or profile == "quick"
    overrides = [f"{g}.{k}={_hydra(v)}" for (g, k), v in shared.items()]
    overrides += [f"models.{v}.{'.'.join(p)}={_hydra(x)}" for (v, p), x in per_model.items()]
    overrides += [f"nets.{arch}.{k}={_hydra(x)}" for (arch, k), x in per_net.items()]
    cfg = compose([f"profile={profile}", "data.folder=/photos", *overrides], root=ROOT)
    for variant in cfg.variants:
        cfg.variant = variant
        eff = effective_config(cfg)
        for (group, key), new in shared.items():
            assert eff[group][key] == new, (profile, variant, group, key)
    for (variant, path), new in per_model.items():
        cfg.variant = variant
        node = effective_config(cfg)["model"]
        for part in path:
            node = node[part]
        assert node == new, (profile, variant, path)
    for (arch, key), new in per_net.items():  # every variant built on that architecture
        target = OmegaConf.load(ROOT / "conf" / "net" / f"{arch}.yaml")._target_
        users = [v for v in cfg.models if cfg.models[v].net._target_ == target]
        assert users and all(cfg.models[v].net[key] == new for v in users), (profile, arch, key)
    assert per_net or profile != "gpu"
    # Without overrides the per-variant defaults hold (quick: ae trains longer than the default).
    base = compose([f"profile={profile}", "data.folder=/photos", "variant=ae"], root=ROOT)
    ae_steps = effective_config(base)["trainer"]["max_steps"]
    assert ae_steps == for_variant(own["trainer"]["max_steps"], "ae")


def _project(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp_path / "conf").symlink_to(ROOT / "conf")
    return tmp_path


def _steps(cfg) -> dict[str, int]:
    from gensr.training.run import effective_config

    out = {}
    for variant in cfg.variants:
        cfg.variant = variant
        out[variant] = effective_config(cfg)["trainer"]["max_steps"]
    return out


def test_gensr_params_and_stage_overrides_win(tmp_path):
    root = _project(tmp_path)
    write_params([], root=root)
    quick = yaml.safe_load((ROOT / "conf" / "profile" / "quick.yaml").read_text())["trainer"]["max_steps"]
    assert _steps(load_stage_config([], root=root)) == {v: for_variant(quick, v) for v in VARIANTS}
    # A stage script's command line: every variant, or one variant's entry.
    assert _steps(load_stage_config(["trainer.max_steps=20"], root=root)) == dict.fromkeys(VARIANTS, 20)
    assert _steps(load_stage_config(["trainer.max_steps.ae=30"], root=root))["ae"] == 30
    write_params(["trainer.max_steps=20"], root=root)  # `gensr params trainer.max_steps=20`
    assert _steps(load_stage_config([], root=root)) == dict.fromkeys(VARIANTS, 20)


@pytest.mark.slow  # test_gensr_params_and_stage_overrides_win runs the same composer (write_params)
def test_dvc_exp_run_set_param_wins_and_bad_values_stop_the_stage(tmp_path):
    """`dvc exp run -S` composes conf/ with DVC's own Hydra support; the stage's config load refuses
    a bad value with the one-line error."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "conf", repo / "conf")
    check = ("import sys; from gensr.errors import entry_point; from gensr.config import load_stage_config; "
             "sys.exit(entry_point(lambda argv: load_stage_config(argv) and 0)([]))")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"check": {"cmd": f'python -c "{check}"', "params": ["trainer", "degradation"]}}}))
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "hydra.enabled", "true"],
                ["gensr", "params"], [*git, "add", "-A"], [*git, "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    proc = subprocess.run(["dvc", "exp", "run", "-S", "trainer.max_steps=20", "-S", "degradation.scale=5"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "error: degradation.scale=5: must be one of 2, 3, 4" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    params = yaml.safe_load((repo / "params.yaml").read_text())  # what DVC composed for the stage
    assert params["trainer"]["max_steps"] == 20
    assert all(for_variant(params["trainer"]["max_steps"], v) == 20 for v in params["variants"])
