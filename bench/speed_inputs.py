"""What bench/speed.py's sections share: pure helpers (tested in tests/test_bench_speed.py), the
ae_res model and its ONNX exports (fp32, int8), a photo mosaic, and the torch / ORT speed timing."""
from __future__ import annotations

import functools
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gensr.config import compose  # noqa: E402
from gensr.io import save_png  # noqa: E402

ORT_CPU = ["CPUExecutionProvider"]


# ---- cheap pure helpers (tested in tests/test_bench_speed.py) --------------------------------
def mpix_per_s(shape: tuple[int, ...], scale: int, seconds: float) -> float:
    """Output megapixels per second for an NCHW input `shape` upscaled `scale`x in `seconds`
    (the formula of gensr.export.validate.benchmark)."""
    n, _, h, w = shape
    return n * h * scale * w * scale / 1e6 / seconds


def steady_rate(stamps: list[float], warm: int) -> float:
    """Steps/s from the end-of-step times, leaving out the first `warm` steps (allocations,
    first-call dispatch, Adam state creation). The interval starts at the end of step `warm`."""
    if len(stamps) <= warm or warm < 1:
        raise ValueError(f"need more than {warm} >= 1 step stamps, got {len(stamps)}")
    return (len(stamps) - warm) / (stamps[-1] - stamps[warm - 1])


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs (2 x multiply-adds) of convs/matmuls in one forward; element-wise ops not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


# ---- shared inputs: the model, its ONNX exports, a photo -------------------------------------
MODEL_PATTERN = "models/ae_res/model.pt"  # speed.py --model sets it; {scale} is replaced


@functools.cache
def sr_net(scale: int) -> tuple[torch.nn.Module, dict, str]:
    """The ae_res generator: the trained models/ae_res/model.pt when it is at `scale`, else the
    untrained architecture with small random weights in its zero-initialised output conv (else
    the output is exactly the bicubic skip and int8 calibration sees a dead body)."""
    from gensr.checkpoint import load_model

    path = Path(MODEL_PATTERN.replace("{scale}", str(scale)))
    path = path if path.is_absolute() else ROOT / path
    if path.is_file():
        try:
            net, meta = load_model(path, variant="ae_res", scale=scale, channels=3)
            return net.eval(), meta, f"trained weights {path}"
        except (ValueError, RuntimeError) as e:  # another scale, or stale architecture
            why = str(e).splitlines()[0]
    else:
        why = f"{path} absent"
    from hydra.utils import instantiate

    torch.manual_seed(0)
    net = instantiate(compose([f"degradation.scale={scale}"], root=ROOT).models.ae_res.net)
    torch.nn.init.normal_(net.upsample.body[-1].weight, std=1e-2)
    meta = {"variant": "ae_res", "scale": scale, "channels": 3}
    return net.eval(), meta, f"untrained ae_res, random output conv ({why})"


@functools.cache
def onnx_fp32(scale: int) -> bytes:
    """The generator exported as the export stage does (dynamo, pinned opset, gensr metadata)."""
    from gensr.export.onnx_export import export_onnx

    net, meta, _ = sr_net(scale)
    return export_onnx(net, meta, compose([], root=ROOT).export.opset).SerializeToString()


@functools.cache
def onnx_int8(scale: int, patches: int) -> bytes:
    """The export stage's int8 QDQ model, calibrated on `patches` crops of a photo mosaic."""
    import onnx

    from gensr.export import lighten
    from gensr.export.onnx_export import build_metadata, set_metadata

    ex = compose([], root=ROOT).export
    with tempfile.TemporaryDirectory(prefix="gensr-calib-") as tmp:
        save_png(Path(tmp) / "lr.png", photo(480, 270))
        crops = lighten.calibration_patches(Path(tmp), patches, ex.calibration.patch_size, 3, ex.calibration.seed)
    proto = onnx.ModelProto.FromString(onnx_fp32(scale))
    int8 = lighten.to_int8(proto, crops, ex.calibration.method, ex.calibration.float_edge_convs)
    set_metadata(int8, build_metadata(sr_net(scale)[1], ex.opset, precision="int8"))
    return int8.SerializeToString()


def photo(w: int, h: int) -> np.ndarray:
    """A w x h uint8 RGB mosaic of six of the embedded scikit-image photos (3 x 2 grid)."""
    from PIL import Image

    from gensr.data.sources import EMBEDDED, embedded_array

    out = np.zeros((h, w, 3), np.uint8)
    for i, name in enumerate(EMBEDDED[:6]):
        x0, x1, y0, y1 = (i % 3) * w // 3, (i % 3 + 1) * w // 3, (i // 3) * h // 2, (i // 3 + 1) * h // 2
        img = Image.fromarray(embedded_array(name)).resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC)
        out[y0:y1, x0:x1] = np.asarray(img)
    return out


SPEEDS: dict[tuple[int, int, int], dict[str, float]] = {}


def inference_speed(scale: int, w: int, h: int, cfg: dict, kinds=("torch", "fp32", "int8")) -> dict[str, float]:
    """Median output MP/s of torch eager and ORT (fp32, int8) on one random w x h LR input, the
    three timed in turn each round so slow phases of a noisy machine hit them alike."""
    from gensr.export.onnx_export import ClampedSR
    from gensr.infer.session import make_session
    from gensr.export.validate import ort_runner, torch_runner

    if (scale, w, h) in SPEEDS and set(kinds) <= set(SPEEDS[scale, w, h]):
        return SPEEDS[scale, w, h]
    threads = torch.get_num_threads()  # ORT gets the same number of threads as torch
    blobs = {"fp32": lambda: onnx_fp32(scale), "int8": lambda: onnx_int8(scale, cfg["patches"])}
    runners = {"torch": torch_runner(ClampedSR(sr_net(scale)[0]).eval())}
    for kind in ("fp32", "int8"):
        if kind in kinds:
            session = make_session(blobs[kind](), ORT_CPU, threads)
            runners[kind] = ort_runner(session)
            SPEEDS["providers"] = session.get_providers()
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for run in runners.values():
        run(x)  # warm-up: allocations, ORT's first-run kernel choices
    for _ in range(cfg["infer_rounds"]):
        for kind, run in runners.items():
            times[kind].append(timeit.timeit(lambda: run(x), number=1))  # noqa: B023 (called at once)
    SPEEDS[scale, w, h] = {k: mpix_per_s(x.shape, scale, statistics.median(t)) for k, t in times.items()}
    return SPEEDS[scale, w, h]
