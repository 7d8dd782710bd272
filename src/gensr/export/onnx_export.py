"""Generator -> ONNX with the dynamo exporter: dynamic batch/height/width, pinned opset, one file.

The exported graph is `clamp(net(lr), 0, 1)`: production consumers get images in the documented
value range without having to know that the raw network can overshoot slightly. A variational
net also gets a sampling graph, `clamp(net.sample(lr, noise=noise), 0, 1)`, whose standard-normal
`noise` is an input (no RNG op: samples are reproducible and ORT matches torch exactly).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

import onnx
import torch
from torch import nn
from torch.export import Dim

import gensr
from gensr.infer.session import (
    FORMAT,
    FORMAT_KEY,
    INPUT_NAME,
    KIND_SAMPLER,
    KIND_SR,
    NOISE_NAME,
    OUTPUT_NAME,
)

# ORT's cubic Resize differs from torch's bicubic by up to 0.06: such a graph can never pass parity.
_UNSAFE_RESIZE_MODES = {b"cubic", "cubic"}
# Largest side / batch the dynamic dims admit (the exporter needs finite bounds to reason about).
MAX_SIDE, MAX_BATCH = 1 << 16, 1 << 10


class ExportError(RuntimeError):
    pass


class ClampedSR(nn.Module):
    """What ships: the generator's deterministic forward, clamped to the [0, 1] value range."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr).clamp(0.0, 1.0)


class SampledSR(nn.Module):
    """The sampling graph: one SR sample (`net.sample`) for standard-normal `noise`, clamped to [0, 1]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, lr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.net.sample(lr, noise=noise).clamp(0.0, 1.0)


def noise_rule(net: nn.Module) -> dict[str, str]:
    """The sampler's metadata: noise channels and stride (latent side = ceil(side / stride))."""
    _, channels, h, _ = net.noise_shape(1, 64, 64)
    stride = 64 // h
    side = (lambda s: s) if stride == 1 else (lambda s: f"ceil({s}/{stride})")  # noqa: E731
    return {"kind": KIND_SAMPLER, "noise_channels": str(channels), "noise_stride": str(stride),
            "noise_shape": f"[N, {channels}, {side('H')}, {side('W')}]",
            "noise_distribution": "standard normal N(0, 1), float32; scale it by T for temperature T"}


def build_metadata(meta: dict[str, Any], opset: int, precision: str = "fp32",
                   noise: dict[str, str] | None = None) -> dict[str, str]:
    """metadata_props from the model file's meta (missing provenance is recorded as 'unknown');
    `noise` (from `noise_rule`) makes it a sampler's."""
    channels = int(meta["channels"])
    return {
        "kind": KIND_SR,
        **(noise or {}),
        FORMAT_KEY: FORMAT,
        "variant": str(meta["variant"]),
        "scale": str(int(meta["scale"])),
        "channels": str(channels),
        "colour_space": "RGB" if channels == 3 else "grayscale",
        "value_range": "[0, 1]",
        "layout": "NCHW",
        "precision": precision,
        "mlflow_run_id": str(meta.get("mlflow_run_id") or "unknown"),
        "git_commit": str(meta.get("git_commit") or "unknown"),
        "manifest_hash": str(meta.get("manifest_hash") or "unknown"),
        "opset": str(opset),
        "producer": f"gensr {gensr.__version__}, torch {torch.__version__}, onnx {onnx.__version__}",
    }


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> onnx.ModelProto:
    """Replace metadata_props with `props` (sorted, so the same model gives the same bytes)."""
    del model.metadata_props[:]
    for key in sorted(props):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(props[key])
    noise = (f" and '{NOISE_NAME}' float32 {props['noise_shape']} ({props['noise_distribution']})"
             if props.get("kind") == KIND_SAMPLER else "")
    model.doc_string = (
        f"gensr x{props['scale']} super-resolution ({props['variant']}, {props['precision']}, {props['kind']}): "
        f"input '{INPUT_NAME}' float32 [N, {props['channels']}, H, W] in [0, 1]{noise} -> output "
        f"'{OUTPUT_NAME}' float32 [N, {props['channels']}, {props['scale']}H, {props['scale']}W] in [0, 1]."
    )
    return model


def check_graph(model: onnx.ModelProto, opset: int, label: str) -> None:
    """Full ONNX check, the pinned opset, and no op known to differ between ORT and torch."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{label}: ONNX checker rejected the graph: {e}") from e
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if default != [opset]:
        raise ExportError(f"{label}: graph uses opset {default}, the pinned opset is {opset}")
    for node in model.graph.node:
        if node.op_type == "Resize":
            mode = next((a.s for a in node.attribute if a.name == "mode"), b"nearest")
            if mode in _UNSAFE_RESIZE_MODES:
                raise ExportError(
                    f"{label}: node {node.name} is a cubic Resize, whose onnxruntime results differ "
                    "from torch's bicubic by up to 0.06; use pixel shuffle / LinearUpsample in the net"
                )


def export_onnx(net: nn.Module, meta: dict[str, Any], opset: int, sampler: bool = False) -> onnx.ModelProto:
    """Export `net` (eval mode, CPU) to an in-memory ModelProto with metadata, checked; `sampler`:
    its sampling graph (inputs lr, noise) instead of the deterministic one."""
    label = f"variant {meta.get('variant')}" + (" (sampler)" if sampler else "")
    channels = int(meta["channels"])
    net = net.eval().cpu()
    model = (SampledSR if sampler else ClampedSR)(net).eval()
    # Example of batch 2 and sides > 1 so no dim is specialised to a constant (0/1 specialisation).
    g = torch.Generator().manual_seed(0)
    example = (torch.rand(2, channels, 24, 37, generator=g),)
    batch = Dim("batch", min=1, max=MAX_BATCH)
    dims: tuple[dict, ...] = ({0: batch, 2: Dim("height", min=1, max=MAX_SIDE), 3: Dim("width", min=1, max=MAX_SIDE)},)
    names = [INPUT_NAME]
    if sampler:
        example += (torch.randn(net.noise_shape(2, 24, 37), generator=g),)
        # The latent sides are a function of H, W (ceil(H/2)) that Dim arithmetic cannot state:
        # AUTO lets the exporter derive them from the graph.
        dims += ({0: batch, 2: Dim.AUTO, 3: Dim.AUTO},)
        names.append(NOISE_NAME)
    # The exporter narrates every step at INFO and warns about torchvision ops it cannot register.
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, example, dynamo=True, dynamic_shapes=dims, opset_version=opset,
                input_names=names, output_names=[OUTPUT_NAME], external_data=False,
                optimize=True, verbose=False,
            )
    except Exception as e:
        raise ExportError(f"{label}: torch.onnx.export (dynamo) failed: {type(e).__name__}: {e}") from e
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    proto = program.model_proto
    set_metadata(proto, build_metadata(meta, opset, noise=noise_rule(net) if sampler else None))
    check_graph(proto, opset, label)
    return proto
