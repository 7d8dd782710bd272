"""bench/interpolate.py: the blend of two models is the blend of their weights, fused for deployment."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import eval_fixtures as fx

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_interpolate", ROOT / "bench" / "interpolate.py")
interpolate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(interpolate)


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_blending_two_linear_models_blends_their_outputs(share, tmp_path):
    """The fixtures' linear upsamplers: a blend of weights is exactly that blend of outputs."""
    from gensr.checkpoint import load_model

    psnr, gan = fx.write_model(tmp_path, "smooth", 2, kind="smooth"), fx.write_model(tmp_path, "gan", 2, kind="gan")
    lr = torch.from_numpy(np.random.default_rng(0).random((1, 3, 20, 24)).astype(np.float32))
    with torch.no_grad():
        want = ((1 - share) * load_model(gan)[0](lr) + share * load_model(psnr)[0](lr))
        got = interpolate.blended_net(psnr, gan, share, 2)(lr)
    assert torch.allclose(got, want, atol=1e-5)


def test_a_share_outside_0_1_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        interpolate.main(["--benchmarks", str(tmp_path), "--scale", "2", "--psnr", "a.pt", "--gan", "b.pt",
                          "--shares", "0.5", "1.5"])
    assert "--shares: each must be in [0, 1]" in capsys.readouterr().err
