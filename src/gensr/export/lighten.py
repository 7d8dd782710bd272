"""Lighter models: fp16 (GPU) and static int8 QDQ (CPU), both keeping float32 inputs/outputs.

Whether they ship is decided by the stage from their measured PSNR-Y drop on the test split.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_ir
from onnx_ir.passes.common import TopologicalSortPass
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.transformers.float16 import convert_float_to_float16

from gensr.infer.session import INPUT_NAME
from gensr.io import list_images, read_image

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and activations in float16, float32 at the graph's input and output (keep_io_types),
    so callers feed the same arrays as to the fp32 model."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    # Stale float32 value_info from the exporter would contradict the converted types.
    del model.graph.value_info[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True)
    # The converter appends its input/output Casts at the end of the node list; ONNX requires
    # topological order.
    ir_model = onnx_ir.from_proto(half)
    TopologicalSortPass()(ir_model)
    return onnx_ir.to_proto(ir_model)


def calibration_patches(
    lr_dir: Path, n: int, size: int, channels: int, seed: int
) -> list[np.ndarray]:
    """`n` random LR crops (C, size, size) from the training split: the activations' real range."""
    files = list_images(lr_dir)
    rng = np.random.default_rng(seed)
    images = [read_image(p, channels) for p in files]
    patches = []
    for i in range(n):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        ph, pw = min(size, h), min(size, w)
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        patches.append(np.ascontiguousarray(img[y : y + ph, x : x + pw].transpose(2, 0, 1)))
    return patches


class PatchReader(CalibrationDataReader):
    """Feeds calibration patches one at a time (patches may differ in size at image borders)."""

    def __init__(self, patches: list[np.ndarray], input_name: str = INPUT_NAME):
        self._items = iter([{input_name: p[None].astype(np.float32)} for p in patches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def edge_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Convs nearest the graph's input and output (through non-Conv ops such as Pad,
    DepthToSpace, Add, Clip): the first layers and the ones that write pixel values, including a
    global-residual upsampler. Kept in float32, they cost little time and most of int8's PSNR loss
    (measured on the gan variant: 0.31 dB drop with them quantised, < 0.01 dB without)."""
    producers = {out: n for n in model.graph.node for out in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def walk(start: list[str], step) -> set[str]:
        found, seen, todo = set(), set(), list(start)
        while todo:
            for node in step(todo.pop()):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if node.op_type == "Conv":
                    found.add(node.name)
                else:
                    todo.extend(node.output if step is downstream else node.input)
        return found

    def downstream(tensor: str) -> list:
        return consumers.get(tensor, [])

    def upstream(tensor: str) -> list:
        return [producers[tensor]] if tensor in producers else []

    return sorted(walk([i.name for i in model.graph.input], downstream)
                  | walk([o.name for o in model.graph.output], upstream))


def to_int8(
    model: onnx.ModelProto, patches: list[np.ndarray], method: str = "minmax", float_edges: bool = True
) -> onnx.ModelProto:
    """Static QDQ quantisation: int8 per-channel weights, uint8 activations calibrated on `patches`;
    with `float_edges`, the input and output convolutions stay float32 (see `edge_convs`)."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {sorted(CALIBRATION_METHODS)}, got {method!r}")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, node in enumerate(model.graph.node):
        node.name = node.name or f"gensr_node_{i}"  # nodes_to_exclude works by name
    exclude = edge_convs(model) if float_edges else []
    quiet = logging.getLogger()
    level = quiet.level
    with tempfile.TemporaryDirectory(prefix="gensr-int8-") as tmp:
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(model, src)
        try:
            quiet.setLevel(logging.ERROR)  # quantize_static warns about pre-processing on the root logger
            with contextlib.redirect_stdout(io.StringIO()):  # histogram calibrators print progress
                quantize_static(
                    src, out, PatchReader(patches),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,  # asymmetric activations: ReLU outputs are >= 0
                    weight_type=QuantType.QInt8,
                    per_channel=True,  # SR convs have very different per-filter ranges
                    calibrate_method=CALIBRATION_METHODS[method],
                    calibration_providers=["CPUExecutionProvider"],
                    nodes_to_exclude=exclude,
                    extra_options={"CalibTensorRangeSymmetric": False},
                )
        finally:
            quiet.setLevel(level)
        return onnx.load_model(out)
