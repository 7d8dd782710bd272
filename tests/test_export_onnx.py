"""ONNX export of every configured generator: dynamic shapes, metadata, parity with PyTorch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from gensr.config import compose
from gensr.infer import session as runtime
from gensr.export.onnx_export import ClampedSR, ExportError, SampledSR, export_onnx
from gensr.export.validate import ort_runner, outputs, parity, random_inputs, torch_runner

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFS = sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))


@pytest.fixture(scope="module")
def export_cfg():
    return compose([], root=ROOT).export


# Several conf/model files share one generator config (gan, sparse_ae, aae use ae_res's net with
# other losses): each distinct net is exported and checked once, every config is still covered.
_checked: dict[str, dict] = {}


# Net options that change the exported graph, beyond each file's defaults.
NET_OPTIONS = [(m, []) for m in MODEL_CONFS] + [
    ("ae_res", ["models.ae.net.upsampler=direct", "degradation.scale=4"]),
]


@pytest.mark.parametrize(("model_conf", "overrides"), NET_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_model_config_exports_and_matches_torch(model_conf, overrides, export_cfg):
    """The generator of each conf/model/*.yaml exports with dynamic batch/height/width and its ORT
    output matches torch eager at odd, non-square shapes and batch 1 and 2 (the stage's criteria;
    the stage itself runs all of export.parity_shapes)."""
    cfg = compose([f"model@models.ae={model_conf}", *overrides], root=ROOT)
    key = OmegaConf.to_yaml(cfg.models.ae.net)
    if key not in _checked:
        torch.manual_seed(0)
        net = instantiate(cfg.models.ae.net).eval()
        scale, channels = int(cfg.degradation.scale), int(cfg.data.channels)
        proto = export_onnx(net, {"variant": model_conf, "scale": scale, "channels": channels}, export_cfg.opset)
        session = runtime.make_session(proto.SerializeToString(), ["CPUExecutionProvider"], threads=2)
        assert session.get_providers() == ["CPUExecutionProvider"]
        inputs = random_inputs([(17, 23)], [2], channels, seed=1) | random_inputs([(123, 77)], [1], channels, seed=2)
        torch_out = outputs(torch_runner(ClampedSR(net).eval()), inputs)
        result = parity(inputs, torch_out, outputs(ort_runner(session), inputs),
                        export_cfg.max_abs_diff, export_cfg.min_psnr_db)
        for name, case in result["cases"].items():
            n, c, h, w = case["shape"]
            assert runtime.run(session, inputs[name]).shape == (n, c, scale * h, scale * w)
        _checked[key] = result
    result = _checked[key]
    assert result["passed"], result["failures"]


def _variational(model_conf: str) -> bool:
    net = compose([f"model@models.ae={model_conf}"], root=ROOT).models.ae.net
    return net._target_.endswith(".VariationalSR") or bool(net.get("variational"))


VARIATIONAL_CONFS = [m for m in MODEL_CONFS if _variational(m)]


@pytest.mark.parametrize("model_conf", VARIATIONAL_CONFS)
def test_variational_configs_export_a_sampler_that_matches_torch(model_conf, export_cfg):
    """Each variational generator also exports its sampling graph (inputs lr and noise, no RNG op),
    equal to torch's `sample` for the same noise at odd shapes and batch 2."""
    cfg = compose([f"model@models.ae={model_conf}"], root=ROOT)
    torch.manual_seed(0)
    net = instantiate(cfg.models.ae.net).eval()
    for p in net.parameters():  # zero-initialised heads would hide the noise path from the check
        torch.nn.init.normal_(p, std=0.05)
    proto = export_onnx(net, {"variant": model_conf, "scale": 2, "channels": 3}, export_cfg.opset, sampler=True)
    assert not [n for n in proto.graph.node if "Random" in n.op_type]
    session = runtime.make_session(proto.SerializeToString(), ["CPUExecutionProvider"], threads=2)
    meta = runtime.read_metadata(session, model_conf, sampler=True)
    inputs = random_inputs([(17, 23)], [2], 3, seed=1) | random_inputs([(40, 31)], [1], 3, seed=2)
    noise = {k: runtime.sample_noise(runtime.noise_shape(meta, x.shape[0], *x.shape[2:]), 0, i)
             for i, (k, x) in enumerate(inputs.items())}
    ort_out = outputs(ort_runner(session), inputs, noise)
    result = parity(inputs, outputs(torch_runner(SampledSR(net).eval()), inputs, noise), ort_out,
                    export_cfg.max_abs_diff, export_cfg.min_psnr_db)
    assert result["passed"], result["failures"]
    mu_out = outputs(torch_runner(ClampedSR(net).eval()), inputs)
    assert all(np.abs(ort_out[k] - mu_out[k]).max() > 1e-3 for k in inputs)  # the noise does reach the output


def test_graph_is_dynamic_and_carries_metadata(tmp_path):
    from export_helpers import LocalSR, export_file

    path = export_file(LocalSR(scale=3, channels=1), tmp_path / "m.onnx", "tiny", scale=3, channels=1)
    model = onnx.load(path)
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    assert [o.version for o in model.opset_import if o.domain == ""] == [18]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 1 and all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))
    meta = runtime.read_metadata(runtime.make_session(path, ["CPUExecutionProvider"]))
    assert meta["scale"] == 3 and meta["channels"] == 1
    assert meta.items() >= {"gensr.format": runtime.FORMAT, "variant": "tiny", "layout": "NCHW",
                         "colour_space": "grayscale", "value_range": "[0, 1]", "mlflow_run_id": "r0",
                         "git_commit": "abc123", "manifest_hash": "m0", "precision": "fp32"}.items()


class BicubicNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False))


def test_bicubic_resize_is_refused():
    """ORT's cubic Resize differs from torch's bicubic by up to 0.06: refused at export, by name."""
    with pytest.raises(ExportError, match="cubic Resize"):
        export_onnx(BicubicNet().eval(), {"variant": "bicubic", "scale": 2, "channels": 3}, 18)


def test_parity_reports_shape_and_difference():
    x = {"random_b1_5x7": np.zeros((1, 3, 5, 7), np.float32)}
    result = parity(x, x, {k: v + 1e-3 for k, v in x.items()}, max_abs_diff=1e-4, min_psnr_db=60)
    assert not result["passed"]
    assert "[1, 3, 5, 7]" in result["failures"][0] and "0.001" in result["failures"][0]
