"""Speed figures of gensr, each a ratio measured in one run on the same model and inputs.

    python bench/speed.py [--only a b c d e] [--quick]

(a) Lightning training steps/s vs a plain PyTorch loop               target >= 0.95
(b) ONNX Runtime (CPU provider) vs torch eager, output MP/s (+ int8)   target >= 1.3
(c) `gensr upscale` to a 3840x2160 output: wall time, peak RSS        target < 2 GiB
(d) prepare stage throughput, 2 workers vs 1                          target >= 1.7
(e) GFLOPs per output megapixel; fraction of this CPU's matmul peak reached by torch / ORT

Every figure is a ratio of timings that other load on the machine distorts: run it on a quiet
machine. --quick shrinks sizes and repeats to a smoke test whose numbers mean nothing; it writes
bench/runs/speed-quick.json instead of bench/runs/speed.json so real figures are never clobbered.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.util
import io
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gensr.config import compose  # noqa: E402
from gensr.io import atomic_write_json, save_png  # noqa: E402

PHOTOS = Path("/tmp/gensr-photos")  # the 40 photos bench/prepare.py fetches
FULL = dict(batch=8, lr_side=64, warm=5, steps=30, rounds=5,             # (a)
            sizes=[(256, 256), (960, 540)], infer_rounds=5, patches=64,  # (b), (e): LR w x h
            upscale_in=(1920, 1080), photos=None, prep_rounds=2,          # (c), (d)
            matmul=4096)                                                  # (e)
QUICK = dict(batch=4, lr_side=24, warm=2, steps=3, rounds=2,
             sizes=[(48, 48), (96, 54)], infer_rounds=2, patches=2,
             upscale_in=(240, 136), photos=3, prep_rounds=1, matmul=256)
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
MODEL_PATTERN = "models/ae_res/model.pt"  # --model; {scale} is replaced


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


_speeds: dict[tuple[int, int, int], dict[str, float]] = {}


def inference_speed(scale: int, w: int, h: int, cfg: dict, kinds=("torch", "fp32", "int8")) -> dict[str, float]:
    """Median output MP/s of torch eager and ORT (fp32, int8) on one random w x h LR input, the
    three timed in turn each round so slow phases of a noisy machine hit them alike."""
    from gensr.export.onnx_export import ClampedSR
    from gensr.infer.session import make_session
    from gensr.export.validate import ort_runner, torch_runner

    if (scale, w, h) in _speeds and set(kinds) <= set(_speeds[scale, w, h]):
        return _speeds[scale, w, h]
    threads = torch.get_num_threads()  # ORT gets the same number of threads as torch
    blobs = {"fp32": lambda: onnx_fp32(scale), "int8": lambda: onnx_int8(scale, cfg["patches"])}
    runners = {"torch": torch_runner(ClampedSR(sr_net(scale)[0]).eval())}
    for kind in ("fp32", "int8"):
        if kind in kinds:
            session = make_session(blobs[kind](), ORT_CPU, threads)
            runners[kind] = ort_runner(session)
            _speeds["providers"] = session.get_providers()
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for run in runners.values():
        run(x)  # warm-up: allocations, ORT's first-run kernel choices
    for _ in range(cfg["infer_rounds"]):
        for kind, run in runners.items():
            times[kind].append(timeit.timeit(lambda: run(x), number=1))  # noqa: B023 (called at once)
    _speeds[scale, w, h] = {k: mpix_per_s(x.shape, scale, statistics.median(t)) for k, t in times.items()}
    return _speeds[scale, w, h]


# ---- the sections: each returns [(figure, value, target text, met or None)] ------------------
def section_a(cfg: dict, say) -> list:
    import lightning as L

    from gensr.training.run import build_module, effective_config

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # "GPU available: ..." banners
    for noise in (".*does not have many workers.*", ".*no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", noise)
    eff = effective_config(compose(["variant=ae_res", "degradation.scale=2"], root=ROOT))
    clip, losses = eff["trainer"].get("gradient_clip_val"), eff["model"]["losses"]
    if list(losses) != ["l1"] or float(losses["l1"].get("weight", 1.0)) != 1.0 or "active" in losses["l1"]:
        raise ValueError(f"the plain loop computes L1 (weight 1) but ae_res's losses are now {losses}")
    g = torch.Generator().manual_seed(0)
    b, s = cfg["batch"], cfg["lr_side"]
    pool = [(torch.rand(b, 3, s, s, generator=g), torch.rand(b, 3, 2 * s, 2 * s, generator=g)) for _ in range(4)]
    batches = [pool[i % len(pool)] for i in range(cfg["warm"] + cfg["steps"])]  # one epoch = the whole run

    class Stamps(L.Callback):
        def __init__(self):
            self.t: list[float] = []

        def on_train_batch_end(self, *args) -> None:
            self.t.append(time.perf_counter())

    def lightning() -> float:
        torch.manual_seed(0)
        stamps = Stamps()
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=len(batches), logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, num_sanity_val_steps=0, gradient_clip_val=clip, callbacks=[stamps])
        trainer.fit(build_module(eff), train_dataloaders=DataLoader(batches, batch_size=None))
        return steady_rate(stamps.t, cfg["warm"])

    def plain() -> float:
        torch.manual_seed(0)
        module = build_module(eff)
        net = module.net.train()
        conf = module.configure_optimizers()  # Adam + the project's warm-up/cosine LambdaLR
        opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
        stamps = []
        for lr, hr in DataLoader(batches, batch_size=None):
            opt.zero_grad(set_to_none=True)
            F.l1_loss(net(lr), hr).backward()  # ae_res's loss: L1, weight 1
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            sched.step()
            stamps.append(time.perf_counter())
        return steady_rate(stamps, cfg["warm"])

    rates: dict[str, list[float]] = {"lightning": [], "plain": []}
    for r in range(cfg["rounds"]):  # alternate which goes first: neither always gets a warm cache
        for name, fn in ((("lightning", lightning), ("plain", plain))[:: 1 if r % 2 == 0 else -1]):
            rates[name].append(fn())
    lit, pl = statistics.median(rates["lightning"]), statistics.median(rates["plain"])
    say(f"(a) ae_res x2 training, batch {b} x 3 x {s}x{s} LR, clip {clip}, {cfg['steps']} timed steps after "
        f"{cfg['warm']}, median of {cfg['rounds']} rounds: Lightning {lit:.2f} steps/s, plain loop {pl:.2f} "
        f"steps/s; ratio Lightning/plain = {lit / pl:.3f} (Lightning runs SRModule.training_step with its "
        f"logging and NaN guard)")
    return [("(a) Lightning / plain loop, training steps/s", round(lit / pl, 3), ">= 0.95", lit / pl >= 0.95)]


def section_b(cfg: dict, say) -> list:
    rows = []
    for scale in (2, 4):
        say(f"(b) model x{scale}: {sr_net(scale)[2]}")
        for w, h in cfg["sizes"]:
            mps = inference_speed(scale, w, h, cfg)
            fp, q = mps["fp32"] / mps["torch"], mps["int8"] / mps["torch"]
            say(f"(b) x{scale} {w}x{h} LR: torch eager {mps['torch']:.3f} MP/s, ORT fp32 {mps['fp32']:.3f}, "
                f"ORT int8 {mps['int8']:.3f}; ORT/torch = {fp:.2f}, int8/torch = {q:.2f} "
                f"({torch.get_num_threads()} threads, providers {_speeds['providers']})")
            rows += [(f"(b) ORT fp32 / torch, x{scale} {w}x{h}", round(fp, 3), ">= 1.3", fp >= 1.3),
                     (f"(b) ORT int8 / torch, x{scale} {w}x{h}", round(q, 3), "(info)", None)]
    return rows


def section_c(cfg: dict, say) -> list:
    w, h = cfg["upscale_in"]
    exe = Path(sys.executable).with_name("gensr")
    with tempfile.TemporaryDirectory(prefix="gensr-upscale-") as tmp:
        src, model, log = Path(tmp) / "photo.png", Path(tmp) / "ae_res_x2.onnx", Path(tmp) / "log.txt"
        save_png(src, photo(w, h))
        model.write_bytes(onnx_fp32(2))
        cmd = [str(exe), "upscale", str(src), "-o", str(Path(tmp) / "out"), "--model", str(model),
               "--provider", "cpu", "--threads", str(torch.get_num_threads())]
        with open(log, "w") as out:
            t0 = time.perf_counter()
            child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            # wait4: this child's own rusage (RUSAGE_CHILDREN would mix in every earlier child).
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {child.returncode}:\n{log.read_text()}")
    rss = usage.ru_maxrss * 1024 / 2**30  # Linux reports KiB
    say(f"(c) gensr upscale {w}x{h} -> {2 * w}x{2 * h} (x2 ONNX fp32, {sr_net(2)[2]}, CPU, default tiles): "
        f"{wall:.1f} s wall = {mpix_per_s((1, 3, h, w), 2, wall):.3f} MP/s incl. start-up and PNG I/O, "
        f"peak RSS {rss:.3f} GiB")
    return [(f"(c) gensr upscale to {2 * w}x{2 * h}: wall s", round(wall, 2), "(info)", None),
            (f"(c) gensr upscale to {2 * w}x{2 * h}: peak RSS GiB", round(rss, 3), "< 2", rss < 2)]


def section_d(cfg: dict, say) -> list:
    spec = importlib.util.spec_from_file_location("bench_prepare", ROOT / "bench" / "prepare.py")
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    if len(list(PHOTOS.glob("*.png"))) < 40:
        raise FileNotFoundError(f"{PHOTOS} lacks the 40 photos: run python bench/prepare.py once to fetch them")
    with tempfile.TemporaryDirectory(prefix="gensr-photos-") as tmp:
        folder = PHOTOS
        if cfg["photos"]:  # quick: the few smallest photos
            folder = Path(tmp)
            for p in sorted(PHOTOS.glob("*.png"), key=lambda p: p.stat().st_size)[: cfg["photos"]]:
                (folder / p.name).symlink_to(p)
        order = ([1, 2, 2, 1] * cfg["prep_rounds"])[: 2 * cfg["prep_rounds"]]  # ABBA: drift hits both alike
        err = io.StringIO()  # the stage's tqdm bar would flood the log: keep only other messages
        try:
            with contextlib.redirect_stderr(err):
                runs = prep.throughput(folder, order, say=lambda m: say(f"(d) {m}"))
        finally:
            rest = [ln for ln in re.split(r"[\r\n]", err.getvalue()) if ln.strip() and not ln.startswith("prepare:")]
            print(*rest, sep="\n", file=sys.stderr, end="\n" if rest else "")
    one = statistics.median([r for n, r in runs if n == 1])
    two = statistics.median([r for n, r in runs if n == 2])
    where = f"the {cfg['photos']} smallest photos of {PHOTOS}" if cfg["photos"] else f"the 40 photos of {PHOTOS}"
    say(f"(d) prepare, {where}: 1 worker {one:.2f} MP/s, 2 workers {two:.2f} MP/s; 2 vs 1 = {two / one:.2f}x")
    return [("(d) prepare MP/s, 2 workers / 1", round(two / one, 3), ">= 1.7", two / one >= 1.7)]


def section_e(cfg: dict, say) -> list:
    w, h = cfg["sizes"][-1]
    net, _, note = sr_net(2)
    x = torch.rand(1, 3, h, w)
    gflop_mp = count_flops(net, x) / 1e9 / (4 * w * h / 1e6)
    n = cfg["matmul"]
    a, b = torch.rand(n, n), torch.rand(n, n)
    best = min(timeit.repeat(lambda: a @ b, number=1, repeat=4))  # best-of: the peak, not the typical
    peak = 2 * n**3 / best / 1e9
    mps = inference_speed(2, w, h, cfg, kinds=("torch", "fp32"))
    frac = {k: gflop_mp * mps[k] / peak for k in ("torch", "fp32")}
    say(f"(e) ae_res x2 ({note}): {gflop_mp:.2f} GFLOPs per output MP (convs/matmuls at {w}x{h} LR, "
        f"2 x MACs); float32 matmul {n}x{n} peak {peak:.1f} GFLOPS ({torch.get_num_threads()} threads); "
        f"at {w}x{h} x2 torch eager reaches {frac['torch']:.1%} of peak, ORT {frac['fp32']:.1%}")
    return [("(e) GFLOPs per output MP (x2)", round(gflop_mp, 3), "(info)", None),
            ("(e) matmul peak GFLOPS", round(peak, 1), "(info)", None),
            (f"(e) torch eager fraction of peak, x2 {w}x{h}", round(frac["torch"], 4), "(info)", None),
            (f"(e) ORT fraction of peak, x2 {w}x{h}", round(frac["fp32"], 4), "(info)", None)]


SECTIONS = {"a": section_a, "b": section_b, "c": section_c, "d": section_d, "e": section_e}


def machine() -> dict:
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "cpu": cpu, "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average_start": round(os.getloadavg()[0], 2)}


def main() -> int:
    global MODEL_PATTERN
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    ap.add_argument("--model", default=MODEL_PATTERN,
                    help="ae_res model file, {scale} replaced (e.g. bench/runs/ae_res-full-x{scale}/models/ae_res/model.pt)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and repeats: a smoke test, not figures")
    args = ap.parse_args()
    MODEL_PATTERN = args.model
    cfg = QUICK if args.quick else FULL
    if args.quick:  # one thread: under load, a second OpenMP thread mostly spins waiting for its peer
        torch.set_num_threads(1)
    info = machine()
    print(" | ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    rows, errors, lines = [], {}, []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    for key in args.only:
        t0 = time.perf_counter()
        try:
            rows += SECTIONS[key](cfg, say)
        except Exception as e:  # one broken section must not hide the others' figures
            errors[key] = f"{type(e).__name__}: {e}"
            say(f"({key}) FAILED: {errors[key]}\n{traceback.format_exc()}")
        say(f"({key}) took {time.perf_counter() - t0:.1f} s")
    info["load_average_end"] = round(os.getloadavg()[0], 2)

    met = lambda m: "—" if m is None else ("yes" if m else "no")  # noqa: E731
    print(f"\n## gensr speed{' (--quick: smoke test, figures meaningless)' if args.quick else ''}\n")
    print(f"{info['date']} · `{info['command']}` · torch {info['torch']} · onnxruntime {info['onnxruntime']} · "
          f"{info['cpu']} · {info['torch_threads']} threads · load average {info['load_average_start']} -> "
          f"{info['load_average_end']}\n")
    print("| figure | value | target | met |\n|---|---|---|---|")
    for name, value, target, ok in rows:
        print(f"| {name} | {value} | {target} | {met(ok)} |")
    for key, err in errors.items():
        print(f"| ({key}) failed | {err.splitlines()[0][:120]} | | no |")
    out = ROOT / "bench" / "runs" / ("speed-quick.json" if args.quick else "speed.json")
    atomic_write_json(out, {**info, "quick": args.quick, "sections": args.only, "errors": errors, "lines": lines,
                            "figures": [dict(zip(("figure", "value", "target", "met"), r)) for r in rows]})
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
