"""Speed figures of gensr, each a ratio measured in one run on the same model and inputs.

    python bench/speed.py [--only a b c d e f g] [--quick] [--exports DIR --models DIR --benchmarks DIR]
                          [--run-dir DIR]

(a) Lightning training steps/s vs a plain PyTorch loop               target >= 0.95
(b) ONNX Runtime (CPU provider) vs torch eager, output MP/s (+ int8)   target >= 1.3
(c) `gensr upscale` to a 3840x2160 output: wall time, peak RSS        target < 2 GiB
(d) prepare stage throughput, 2 workers vs 1                          target >= 1.7
(e) GFLOPs per output megapixel; fraction of this CPU's matmul peak reached by torch / ORT
(f) deployment table: per shipped variant, ORT CPU fp32 / int8 output MP/s beside its Set5/Set14
    PSNR-Y gain over bicubic (bench/deploy_table.py)
(g) a real run's wall time in optimisation steps (its timings.json)  target >= 0.93
    (--run-dir models/<variant>; bench/loop_time.py)

Every figure is a ratio of timings that other load on the machine distorts: run it on a quiet
machine. --quick shrinks sizes and repeats to a smoke test whose numbers mean nothing; it writes
bench/runs/speed-quick.json instead of bench/runs/speed.json so real figures are never clobbered.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
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

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))  # speed_inputs beside this file, however it is loaded
import deploy_table  # noqa: E402
import loop_time  # noqa: E402
import speed_inputs as inputs  # noqa: E402
from speed_inputs import (ROOT, SPEEDS, count_flops, inference_speed, mpix_per_s, onnx_fp32,  # noqa: E402
                          photo, sr_net, steady_rate)

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


# ---- the sections: each returns [(figure, value, target text, met or None)] ------------------
def section_a(cfg: dict, say) -> list:
    import lightning as L

    from gensr.training.run import build_module, effective_config

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # "GPU available: ..." banners
    for noise in (".*does not have many workers.*", ".*no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", noise)
    # The step's cost, not the recipe: both sides compute plain L1 (weight 1) every step, so the
    # profile's L1 -> MSE switch (`active` windows) is taken out of the Lightning side too.
    plain_l1 = ["~models.ae_res.losses.mse", "~models.ae_res.losses.l1.active", "models.ae_res.losses.l1.weight=1.0"]
    eff = effective_config(compose(["variant=ae_res", "degradation.scale=2", *plain_l1], root=ROOT))
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
            lr, hr = module.prepare_input(lr), module.prepare_input(hr)  # NHWC when trainer.channels_last
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
                f"({torch.get_num_threads()} threads, providers {SPEEDS['providers']})")
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


SECTIONS = {"a": section_a, "b": section_b, "c": section_c, "d": section_d, "e": section_e,
            "f": deploy_table.section_f, "g": loop_time.section_g}


def machine(argv: list[str]) -> dict:
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, sys.argv[0], *argv]), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "cpu": cpu, "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average_start": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    ap.add_argument("--model", default=inputs.MODEL_PATTERN,
                    help="ae_res model file, {scale} replaced (e.g. bench/runs/ae_res-full-x{scale}/models/ae_res/model.pt)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and repeats: a smoke test, not figures")
    where = deploy_table.Where()
    for name, default, what in (("exports", where.exports, "the export stage's <variant>/model.onnx folders"),
                                ("models", where.models, "the trained <variant>/model.pt (params, GFLOPs)"),
                                ("benchmarks", where.benchmarks, "Set5/ and Set14/ (HR + LR_bicubic)")):
        ap.add_argument(f"--{name}", type=Path, default=default, help=f"(f) {what} (default {default})")
    ap.add_argument("--run-dir", type=Path, help="(g) a trained models/<variant>/ folder with timings.json "
                    "(default: bench/runs/ae_res-full-x2/models/ae_res if it has one, else models/ae_res)")
    args = ap.parse_args(argv)
    inputs.MODEL_PATTERN = args.model
    where = deploy_table.Where(args.exports.resolve(), args.models.resolve(), args.benchmarks.resolve())
    cfg = {**(QUICK if args.quick else FULL), "where": where, "run_dir": args.run_dir,
           "tables": {}}  # sections may add a table
    if args.quick:  # one thread: under load, a second OpenMP thread mostly spins waiting for its peer
        torch.set_num_threads(1)
    info = machine(sys.argv[1:] if argv is None else argv)
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
    if rows or errors:  # (f) alone has only its table
        print("| figure | value | target | met |\n|---|---|---|---|")
    for name, value, target, ok in rows:
        print(f"| {name} | {value} | {target} | {met(ok)} |")
    for key, err in errors.items():
        print(f"| ({key}) failed | {err.splitlines()[0][:120]} | | no |")
    for name, table in cfg["tables"].items():
        print(f"\n### {table.get('title', name)}\n\n{table['markdown']}")
    out = ROOT / "bench" / "runs" / ("speed-quick.json" if args.quick else "speed.json")
    atomic_write_json(out, {**info, "quick": args.quick, "sections": args.only, "errors": errors, "lines": lines,
                            "figures": [dict(zip(("figure", "value", "target", "met"), r)) for r in rows],
                            "tables": cfg["tables"]})
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
