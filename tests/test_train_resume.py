"""Exact resume from last.ckpt after an interruption, and refusing checkpoints that do not fit."""
from __future__ import annotations

import csv
import json

import lightning as L
import pytest
import torch

from gensr.checkpoint import CheckpointMismatchError
from gensr.config import compose
from gensr.training.run import config_hash, effective_config, resume_decision, train
from gensr.training.mlflow_logging import manifest_hash
from train_fixtures import tiny_overrides


class Crash(L.Callback):
    """Stands in for a kill: dies at the start of epoch `at` (after that epoch's predecessor
    has written last.ckpt)."""

    def __init__(self, at: int):
        self.at = at

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            raise RuntimeError("simulated kill")


def assert_same(a, b, where: str) -> None:
    """Nested checkpoint contents equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_interrupted_run_resumes_exactly(project, capsys):
    # aae: manual optimisation, two optimisers and schedulers, seeded prior noise, EMA.
    cfg = compose(tiny_overrides("aae", steps=6, interval=2), root=project)
    model_pt = project / "models" / "aae" / "model.pt"
    last = project / "checkpoints" / "aae" / "last.ckpt"

    ref_metrics = train(cfg)
    ref = torch.load(model_pt, weights_only=True)
    ref_rows = _rows(project / "models" / "aae" / "history.csv")
    ref_ckpt = torch.load(last, weights_only=True)
    assert ref_metrics["steps"] == 6 and len(ref_rows) == 3

    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, extra_callbacks=[Crash(at=2)])  # the finished last.ckpt is not resumed: fresh run
    killed = torch.load(last, weights_only=True)  # plain tensors/containers only
    assert killed["gensr"]["iteration"] == 4
    killed_run = killed["gensr"]["mlflow_run_id"]
    assert "starting fresh" in capsys.readouterr().out

    metrics = train(cfg)
    assert "resuming" in capsys.readouterr().out
    out = torch.load(model_pt, weights_only=True)
    assert out["state_dict"].keys() == ref["state_dict"].keys()
    for k, v in ref["state_dict"].items():
        assert torch.equal(out["state_dict"][k], v), f"EMA weight {k} differs after resume"
    assert metrics["val_psnr_y"] == ref_metrics["val_psnr_y"] and metrics["steps"] == 6
    assert _rows(project / "models" / "aae" / "history.csv") == ref_rows
    # The resumed run continues the killed run's MLflow run.
    assert metrics["mlflow_run_id"] == killed_run == out["meta"]["mlflow_run_id"]
    final = torch.load(last, weights_only=True)
    for key in ("optimizer_states", "lr_schedulers", "state_dict"):
        assert_same(final[key], ref_ckpt[key], key)
    assert_same(final["callbacks"]["EMA"]["shadow"], ref_ckpt["callbacks"]["EMA"]["shadow"], "EMA")

    # ---- refusals, on the checkpoints just written (no more training) ----
    eff = effective_config(cfg)
    chash = config_hash(eff, manifest_hash(project / "data" / "prepared"))
    ckpt_dir = project / "checkpoints" / "aae"
    # a finished run is not resumed
    assert resume_decision(project, ckpt_dir, eff, chash) == (None, None)
    # another variant's checkpoint, named explicitly: refused with a clear error
    other = effective_config(compose(tiny_overrides("ae") + ["trainer.resume=checkpoints/aae/last.ckpt"], root=project))
    with pytest.raises(CheckpointMismatchError, match=r"variant='aae' \(this run: 'ae'\)"):
        resume_decision(project, project / "checkpoints" / "ae", other, chash)
    # ... and found in the variant's own folder by `auto`: not resumed, said so
    (project / "checkpoints" / "ae").mkdir()
    (project / "checkpoints" / "ae" / "last.ckpt").write_bytes(last.read_bytes())
    ae_auto = effective_config(compose(tiny_overrides("ae"), root=project))
    assert resume_decision(project, project / "checkpoints" / "ae", ae_auto, chash) == (None, None)
    assert "variant='aae'" in capsys.readouterr().out
    # another scale
    x3 = effective_config(compose(tiny_overrides("aae") + ["degradation.scale=3", "datamodule.patch_size=33",
                                                           "trainer.resume=checkpoints/aae/last.ckpt"], root=project))
    with pytest.raises(CheckpointMismatchError, match=r"scale=2 \(this run: 3\)"):
        resume_decision(project, ckpt_dir, x3, chash)


def test_changed_config_starts_fresh(project, capsys):
    cfg = compose(tiny_overrides("ae", steps=4, interval=2), root=project)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, extra_callbacks=[Crash(at=1)])
    capsys.readouterr()
    eff = effective_config(compose(tiny_overrides("ae", steps=4, interval=2) + ["models.ae.optim.optimizer.lr=5e-4"], root=project))
    chash = config_hash(eff, manifest_hash(project / "data" / "prepared"))
    assert resume_decision(project, project / "checkpoints" / "ae", eff, chash) == (None, None)
    assert "config changed" in capsys.readouterr().out
    same = effective_config(cfg)
    path, run_id = resume_decision(project, project / "checkpoints" / "ae", same,
                                   config_hash(same, manifest_hash(project / "data" / "prepared")))
    assert path is not None and run_id


def test_init_from_refuses_other_scale_and_loads_same(project):
    from gensr.checkpoint import save_model
    from hydra.utils import instantiate

    eff = effective_config(compose(tiny_overrides("gan"), root=project))
    net = instantiate(eff["model"]["net"])
    path = save_model(project / "models" / "ae_res" / "model.pt", eff["model"]["net"], net.state_dict(),
                      {"variant": "ae_res", "scale": 2, "channels": 3})
    kw = dict(_recursive_=False, variant="gan", channels=3, total_steps=4)
    module = instantiate({**eff["model"], "init_from": "models/ae_res/model.pt"}, scale=2, **kw)
    for k, v in net.state_dict().items():
        assert torch.equal(module.net.state_dict()[k], v)
    eff3 = effective_config(compose(tiny_overrides("gan") + ["degradation.scale=3", "datamodule.patch_size=33"],
                                    root=project))
    with pytest.raises(Exception, match=r"scale=2, but scale=3"):
        instantiate({**eff3["model"], "init_from": str(path)}, scale=3, **kw)
    json.dumps(eff["model"])  # the model config stays plain


def test_vae_inits_from_the_autoencoder_of_the_same_backbone(project):
    # The full profile's VAE recipe: models.vae (vae_res) initialised from a trained ae_res file.
    from gensr.checkpoint import save_model
    from hydra.utils import instantiate

    ae = effective_config(compose(tiny_overrides("ae_res"), root=project))["model"]["net"]
    net = instantiate(ae)
    path = save_model(project / "models" / "ae_res" / "model.pt", ae, net.state_dict(),
                      {"variant": "ae_res", "scale": 2, "channels": 3})
    eff = effective_config(compose(tiny_overrides("vae_res"), root=project))
    kw = dict(_recursive_=False, variant="vae_res", channels=3, total_steps=4, scale=2)
    module = instantiate({**eff["model"], "init_from": str(path)}, **kw)
    for k, v in net.state_dict().items():
        assert torch.equal(module.net.state_dict()[k], v)
    other = effective_config(compose(tiny_overrides("vae_res") + ["models.vae_res.net.features=4"], root=project))
    with pytest.raises(Exception, match="not the architecture"):
        instantiate({**other["model"], "init_from": str(path)}, **kw)


def test_a_run_that_fails_to_start_keeps_the_earlier_checkpoint(project):
    """A run whose config no longer matches last.ckpt starts fresh, but only once its data and model
    are built: an init model of another architecture is refused and the checkpoint stays as it was."""
    from gensr.checkpoint import save_model
    from hydra.utils import instantiate

    init = ["models.gan.init_from=models/ae_res/model.pt", "train_from.gan=models/ae_res/model.pt"]
    cfg = compose(tiny_overrides("gan", steps=4, interval=2) + init, root=project)
    spec = effective_config(cfg)["model"]["net"]
    save_model(project / "models" / "ae_res" / "model.pt", spec, instantiate(spec).state_dict(),
               {"variant": "ae_res", "scale": 2, "channels": 3})
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, extra_callbacks=[Crash(at=1)])
    last = project / "checkpoints" / "gan" / "last.ckpt"
    before = last.read_bytes()

    other = {**spec, "features": 4}  # the init model is replaced by one of another width
    save_model(project / "models" / "ae_res" / "model.pt", other, instantiate(other).state_dict(),
               {"variant": "ae_res", "scale": 2, "channels": 3})
    with pytest.raises(Exception, match="not the architecture"):
        train(cfg)
    assert last.read_bytes() == before
