"""The model files the test fixtures save are real gensr model files: they name gensr classes only,
so they load in a fresh interpreter outside tests/, and they compute what the fixtures meant."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval_fixtures as fx
from export_helpers import save_small_model
from gensr.checkpoint import load_model


def test_every_fixture_model_loads_without_tests_on_sys_path(tmp_path):
    paths = [fx.write_model(tmp_path / "eval", kind, 2, kind=kind) for kind in fx.NETS]
    paths.append(save_small_model(tmp_path / "export", "small"))  # save_vae_res's class: vae's above
    code = ("import sys\n"
            "from gensr.checkpoint import load_model\n"
            "assert not [p for p in sys.path if p.rstrip('/').endswith('tests')], sys.path\n"
            "for path in sys.argv[1:]:\n"
            "    net, meta = load_model(path)\n"
            "    print(meta['variant'], type(net).__module__)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", code, *map(str, paths)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = [line.split()[1] for line in proc.stdout.splitlines()]
    assert len(modules) == len(paths) and all(m.startswith("gensr.") for m in modules), proc.stdout


@pytest.mark.parametrize("kind", sorted(fx.SHARPEN))
def test_saved_linear_model_computes_the_upsample_net(kind, tmp_path):
    net, _ = load_model(fx.write_model(tmp_path, kind, 2, kind=kind))
    meant = fx.UpsampleNet(2, 3, fx.SHARPEN[kind])
    lr = torch.from_numpy(np.random.default_rng(0).random((1, 3, 21, 30)).astype(np.float32))
    with torch.no_grad():
        got, want = net(lr), meant(lr)
    assert got.shape == want.shape == (1, 3, 42, 60)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))  # the borders replicate differently
    assert torch.allclose(got[inner], want[inner], atol=1e-5)
    assert (got - want).abs().max() < 0.5  # and stay close there
