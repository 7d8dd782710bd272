"""The PSNR -> GAN/VAE recipe is the DVC graph: gan and vae are fine-tunes of the trained ae_res,
declared through params `train_from` (dvc.yaml `train: foreach`), and a checkpoint is resumed only
while the model it was fine-tuned from keeps its content."""
from __future__ import annotations

import pytest

from gensr.config import compose
from gensr.schema import ConfigError, validate
from gensr.training.run import config_hash, effective_config, init_model
from train_fixtures import BIN, dvc_project, run_cmd

TINY = """# @package _global_
datamodule: {patch_size: 32, batch_size: 4, num_workers: 0, val_max_side: 48}
trainer: {max_steps: 2, val_check_interval: 2, log_every_n_steps: 1, threads: 1}
models:
  ae_res: {net: {features: 8, n_blocks: 1, latent: 8}}
  gan: {discriminator: {features: 8, depth: 2}, d_warmup_steps: 1}
"""


def _stale(proj) -> set[str]:
    out = run_cmd(["dvc", "status"], proj).stdout
    return {line.strip().rstrip(":") for line in out.splitlines() if line and not line.startswith((" ", "\t"))}


def test_gan_and_vae_are_fine_tunes_of_ae_res_in_the_dag(tmp_path):
    proj = dvc_project(tmp_path / "repo")
    (proj / "conf" / "profile" / "quick.yaml").write_text(TINY)
    run_cmd([str(BIN / "gensr"), "params"], proj)
    dot = run_cmd(["dvc", "dag", "--dot"], proj).stdout
    for child in ("train@gan", "train@vae"):
        assert f'"train@ae_res" -> "{child}"' in dot, dot
    assert '"train@ae_res" -> "train@ae"' not in dot

    # A fresh checkout: asking for the GAN trains its PSNR model first, then fine-tunes from it.
    out = run_cmd(["dvc", "repro", "train@gan", "train@vae"], proj).stdout
    assert out.index("Running stage 'train@ae_res'") < out.index("Running stage 'train@gan'"), out
    assert out.count("generator initialised from") == 2 and "models/ae_res/model.pt" in out, out
    before = _stale(proj)  # the stages never run (ae, aae, ..., evaluate, export)
    assert not {"prepare", "train@ae_res", "train@gan", "train@vae"} & before, before

    # Changing the PSNR model's architecture makes both fine-tunes stale (and resizes them), nothing else.
    run_cmd([str(BIN / "gensr"), "params", "models.ae_res.net.n_blocks=2"], proj)
    assert _stale(proj) - before == {"train@ae_res", "train@gan", "train@vae"}


def test_train_from_must_agree_with_init_from():
    validate(compose([]))
    with pytest.raises(ConfigError, match=r"train_from.gan=null: .*must be pipelines/train.py"):
        validate(compose(["models.gan.init_from=null"]))
    validate(compose(["models.gan.init_from=null", "train_from.gan=pipelines/train.py"]))  # from scratch
    with pytest.raises(ConfigError, match=r"train_from.vae=pipelines/train.py: must be models.vae.init_from"):
        validate(compose(["train_from.vae=pipelines/train.py"]))


def test_fine_tune_nets_follow_the_model_they_start_from():
    cfg = compose(["models.ae_res.net.n_blocks=3", "models.ae_res.net.features=16"])
    assert cfg.models.gan.net == cfg.models.ae_res.net
    assert (cfg.models.vae.net.n_blocks, cfg.models.vae.net.features, cfg.models.vae.net.variational) == (3, 16, True)


def test_resume_requires_the_same_init_model_content(tmp_path):
    eff = effective_config(compose(["variant=gan"]))
    model_file = tmp_path / "models" / "ae_res" / "model.pt"
    model_file.parent.mkdir(parents=True)
    model_file.write_bytes(b"first training")
    path, first = init_model(eff["model"], tmp_path, "gan")
    assert path == model_file
    model_file.write_bytes(b"retrained")  # same path, new content: gan's last.ckpt must not be resumed
    _, second = init_model(eff["model"], tmp_path, "gan")
    assert config_hash(eff, "m", first) != config_hash(eff, "m", second)
    assert config_hash(eff, "m", first) == config_hash(eff, "m", first)
    model_file.unlink()
    with pytest.raises(Exception, match="models.gan.init_from: .*does not exist"):
        init_model(eff["model"], tmp_path, "gan")
