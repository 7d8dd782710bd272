"""Quality per minute of compute: train one variant on a folder of photos for a fixed wall-clock
budget through the project's own code (gensr.data.prepare -> gensr.training.run.train), then score
it on Set5 and Set14 with the standard MATLAB-bicubic LR inputs (the shared protocol: PSNR/SSIM
on Y, `scale` pixels shaved) beside bicubic and the published reference rows.

    .venv/bin/python bench/quality.py --photos /tmp/photos --benchmarks ../shared/benchmarks \
        --variant ae_res --profile full --scales 2 4 --budget-min 60 [--eval Urban=/data/urban/HR]

`--eval NAME=FOLDER` (repeatable) scores any folder of HR images the same way, printed beside
Set5/Set14: HR modcropped, LR = the project's MATLAB-exact bicubic of it (gensr.data.resize, which
reproduces the LR_bicubic files bit for bit; standard LR_bicubic/X<scale> files beside the folder
are used when present), Y channel, `scale` pixels shaved.

The budget is training wall-clock, and a budgeted run ends its schedule inside it: the run gets
it as `trainer.time_budget_s` and re-plans its own step count from its measured wall time per step,
validation, checkpoints and all (gensr.training.budget: after a calibration window, then after every
validation), so warm-up, cosine and the L1->MSE switch span the whole run however the step time
drifts. The first plan (function `planned_steps`; `first_planned_steps` in the results) sets the
validation interval and paces the schedule until the run's first re-plan:

    steps = SAFETY x f_optim x budget / t_optim

t_optim: seconds per optimisation step (on_train_batch_start -> end, as gensr.training.timing
counts them), measured by a short Lightning run of the real module and data. f_optim: the share of
a real run's wall time in optimisation steps (the rest: validation, EMA, checkpoints, logging, the
loader), read from the timings.json of an earlier run (`--timings`, default: this run folder's
previous run, e.g. the first run of a profile calibrates the next), else DEFAULT_OPTIM_FRACTION.
Lightning's `max_time` stays as a safety net at the budget; the results report the run's own
`schedule_completed` and its final `planned_steps` (from its metrics.json).
Everything lands in --work (default bench/runs/): prepared pairs, models, checkpoints, and
results.json; MLflow runs go to experiment `gensr-bench` of the usual tracking store.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))  # scoring beside this file, however it is loaded

from scoring import ScoredSet, bicubic_upscaler, score, scored_sets, torch_upscaler  # noqa: E402

# Published PSNR-Y (the shared benchmarks' README): (method, params, {(set, scale): dB}).
REFERENCE = [
    ("bicubic (published)", "-", {("Set5", 2): 33.66, ("Set14", 2): 30.24, ("Set5", 4): 28.42, ("Set14", 4): 26.00}),
    ("SRCNN", "57K", {("Set5", 2): 36.66, ("Set14", 2): 32.42, ("Set5", 4): 30.48, ("Set14", 4): 27.49}),
    ("FSRCNN", "12K", {("Set5", 2): 37.00, ("Set14", 2): 32.63, ("Set5", 4): 30.72, ("Set14", 4): 27.61}),
    ("VDSR", "665K", {("Set5", 2): 37.53, ("Set14", 2): 33.03, ("Set5", 4): 31.35, ("Set14", 4): 28.01}),
    ("EDSR-baseline", "1.5M", {("Set5", 2): 37.99, ("Set14", 2): 33.57, ("Set5", 4): 32.09, ("Set14", 4): 28.58}),
]


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


# The share of wall time in optimisation steps when no earlier run's timings.json is at hand:
# ae_res x2 full on 2 CPU cores, 390 ms/step probed vs 465 ms/step over the whole run (that probe
# also counted the loader gap, a few ms with one loader process).
DEFAULT_OPTIM_FRACTION = 0.84
SAFETY = 0.97  # the first plan's room for drift (the run's own re-plans then keep it inside the budget)


def planned_steps(budget_s: float, optim_s_per_step: float, optim_fraction: float) -> int:
    """The first plan: training steps whose optimisation, plus the overhead a real run adds around
    it, fit the budget."""
    return max(int(SAFETY * optim_fraction * budget_s / optim_s_per_step), 10)


def optim_fraction(timings: Path | None) -> tuple[float, str]:
    """(share of wall time in optimisation steps, where it comes from): an earlier run's timings.json."""
    if timings is not None and timings.is_file():
        return float(json.loads(timings.read_text())["fractions"]["optim"]), str(timings)
    return DEFAULT_OPTIM_FRACTION, "DEFAULT_OPTIM_FRACTION (no timings.json of an earlier run)"


def seconds_per_step(eff: dict, prepared: Path, probe_steps: int = 25, skip: int = 5) -> float:
    """Mean seconds per optimisation step (on_train_batch_start -> end, as timings.json's optim phase)
    of `probe_steps` real training iterations (the variant's module, datamodule, optimiser, clipping,
    precision), after `skip` warm-up iterations."""
    import lightning as L
    import torch

    from gensr.training.run import _precision, build_datamodule, build_module

    class Clock(L.Callback):
        def __init__(self):
            self.t0, self.total, self.n = 0.0, 0.0, 0

        def now(self, module) -> float:
            if module.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.t0 = self.now(module)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx >= skip:
                self.total, self.n = self.total + self.now(module) - self.t0, self.n + 1

    eff = {**eff, "steps_per_epoch": probe_steps, "total_steps": probe_steps}
    clock = Clock()
    tr = eff["trainer"]
    trainer = L.Trainer(
        accelerator=tr.get("accelerator", "auto"), devices=1, precision=_precision(tr), max_steps=probe_steps,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[clock], use_distributed_sampler=False,
    )
    trainer.fit(build_module(eff), datamodule=build_datamodule(eff, prepared))
    return clock.total / clock.n


@dataclass(frozen=True)
class TrainedRun:
    """A bench run folder (models/<variant>/ inside) and how it was made."""

    dir: Path
    overrides: list[str]
    ms_per_step: float | None = None  # the probe's figure (None: rescored with --score-only)
    steps: int | None = None          # the first plan (the run re-plans it: metrics.json planned_steps)
    optim_fraction: float | None = None  # the share of wall time in optimisation the plan assumed


def run_config(args, scale: int, photos: Path, work: Path):
    """(tag, overrides, cfg) of one scale's run; a fine-tune (gan, vae) starts from this bench's
    ae_res run at the same scale unless --set names its init_from."""
    from gensr.config import compose

    tag = f"{args.variant}-{args.profile}-x{scale}"
    overrides = [
        f"profile={args.profile}", "data.source=folder", f"data.folder={photos}", f"degradation.scale={scale}",
        f"variant={args.variant}", f"data.out_dir={work / f'prepared-x{scale}'}", "data.split.test_fraction=0",
        "trainer.resume=never", "logger.experiment=gensr-bench", f"seed={args.seed}",
        *[o.replace("{scale}", str(scale)) for o in args.set],
    ]
    cfg = compose(overrides, root=ROOT)
    init = cfg.models[args.variant].get("init_from")
    if init and not Path(init).is_absolute():  # a fine-tune: its start model lives in the checkout, not the run
        default = work / f"ae_res-{args.profile}-x{scale}" / init  # the bench run of the model it names
        init = cfg.models[args.variant].init_from = str(default if default.is_file() else ROOT / init)
    if init and args.variant in (cfg.get("train_from") or {}):  # the schema: the DVC dep is the start model
        cfg.train_from[args.variant] = init
    return tag, overrides, cfg


def run_scale(args, scale: int, sets: list[ScoredSet], photos: Path, work: Path) -> dict:
    from gensr.data.prepare import prepare
    from gensr.training.run import effective_config, train

    tag, overrides, cfg = run_config(args, scale, photos, work)
    if args.score_only:
        return scored(args, scale, sets, TrainedRun(work / tag, overrides))
    t = time.perf_counter()
    summary = prepare(cfg, ROOT)
    print(f"[{tag}] prepared {summary.get('counts', summary)} in {time.perf_counter() - t:.0f} s", flush=True)

    if args.steps:  # a fixed step count: recipes compared at equal work, whatever the machine's speed does
        return fixed_steps_run(args, scale, sets, cfg, tag, overrides, work)
    budget_s = args.budget_min * 60
    eff = effective_config(cfg)
    if eff["trainer"].get("threads"):  # the probe must run on the threads training will use
        import torch

        torch.set_num_threads(int(eff["trainer"]["threads"]))
    sps = seconds_per_step(eff, Path(cfg.data.out_dir))
    # an earlier run's share of wall time in optimisation (this folder's: read before training rewrites it)
    timings = Path(str(args.timings).replace("{scale}", str(scale))) if args.timings else None
    fraction, source = optim_fraction(timings or work / tag / "models" / args.variant / "timings.json")
    steps = planned_steps(budget_s, sps, fraction)
    steps = set_schedule(cfg, eff, steps, budget_s)
    print(f"[{tag}] {sps * 1e3:.0f} ms per optimisation step measured, {fraction:.1%} of the wall in optimisation "
          f"({source}) -> first plan {steps} steps in the {args.budget_min:g}-minute budget (the run re-plans it)",
          flush=True)
    t = time.perf_counter()
    done = train(cfg, root=work / tag)
    ended = "completed" if done.get("schedule_completed") else "NOT completed (max_time stopped it)"
    print(f"[{tag}] trained in {time.perf_counter() - t:.0f} s: schedule {ended}, {done.get('steps')}/"
          f"{done.get('planned_steps')} steps (first plan {steps})", flush=True)
    return scored(args, scale, sets, TrainedRun(work / tag, overrides, round(sps * 1e3, 1), steps, fraction))


def set_schedule(cfg, eff: dict, steps: int, budget_s: float | None) -> int:
    """Write the run's step count (whole validation intervals) and budget into `cfg`; the steps.
    The first plan is epochs x interval steps (gensr.training.run). At least 4 validations: with a
    budget each one re-plans the steps from the run's measured time (and checkpoints)."""
    from omegaconf import open_dict

    interval = min(int(eff["trainer"]["val_check_interval"]), max(steps // 4, 1))
    steps -= steps % interval
    with open_dict(cfg):  # the shared keys replace any per-variant mapping (gensr.schema)
        cfg.trainer.max_steps, cfg.trainer.val_check_interval = steps, interval
        cfg.trainer.time_budget_s = budget_s
        # the safety net: the run plans to end before it
        cfg.trainer.max_time = {"seconds": int(budget_s)} if budget_s else None
    return steps


def fixed_steps_run(args, scale: int, sets: list[ScoredSet], cfg, tag: str, overrides: list[str], work: Path) -> dict:
    """Train `--steps` steps, no wall-clock budget: the schedule spans exactly those steps."""
    from gensr.training.run import effective_config, train

    steps = set_schedule(cfg, effective_config(cfg), args.steps, None)
    print(f"[{tag}] fixed {steps} steps (no wall-clock budget)", flush=True)
    t = time.perf_counter()
    done = train(cfg, root=work / tag)
    print(f"[{tag}] trained in {time.perf_counter() - t:.0f} s: {done.get('steps')} steps", flush=True)
    return scored(args, scale, sets, TrainedRun(work / tag, overrides, None, steps, None))


def scored(args, scale: int, sets: list[ScoredSet], run: TrainedRun) -> dict:
    """Score a run folder's model file on the sets; steps/seconds come from its metrics.json."""
    from gensr.checkpoint import load_model

    run_dir = run.dir
    model_file = run_dir / "models" / args.variant / "model.pt"
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: no trained model (run without --score-only first)")
    metrics = json.loads((run_dir / "models" / args.variant / "metrics.json").read_text())
    timings_json = run_dir / "models" / args.variant / "timings.json"
    timings = json.loads(timings_json.read_text()) if timings_json.is_file() else {}
    budget_s = metrics.get("time_budget_s")
    t = time.perf_counter()
    # The deployed net (re-parameterisable branches fused, as they ship): scored and counted.
    deployed = load_model(model_file, scale=scale, channels=3)[0]
    result = score(torch_upscaler(deployed, scale), sets, scale)
    bicubic = score(bicubic_upscaler(scale), sets, scale)
    ensemble = score(torch_upscaler(deployed, scale, ensemble=True), sets, scale) if args.self_ensemble else None
    print(f"[{run_dir.name}] scored {'/'.join(s.name for s in sets)} in {time.perf_counter() - t:.0f} s", flush=True)
    return {
        "variant": args.variant, "profile": args.profile, "scale": scale,
        # from the run's own record, so a --score-only rescore says how its model was trained
        "budget_min": budget_s / 60 if budget_s else None, "fixed_steps": None if budget_s else int(metrics["steps"]),
        "steps": int(metrics["steps"]), "planned_steps": metrics.get("planned_steps", run.steps),
        "first_planned_steps": metrics.get("first_planned_steps", run.steps), "ms_per_step_probe": run.ms_per_step,
        "schedule_completed": metrics.get("schedule_completed"), "time_budget_s": budget_s,
        "optim_fraction_planned": run.optim_fraction, "optim_fraction": timings.get("fractions", {}).get("optim"),
        "wall_ms_per_step": timings.get("wall_ms_per_step"),
        "train_s": metrics["seconds"], "params": sum(p.numel() for p in deployed.parameters()), "device": device_name(),
        "overrides": run.overrides, "sets": result, "self_ensemble": ensemble, "bicubic": bicubic, "val_psnr_y": metrics.get("val_psnr_y"),
        "model": str(model_file),
    }


def _texture(m: dict) -> str:
    return f", texture {m['texture_distance']:.3f}" if "texture_distance" in m else ""  # absent in older results


def _budget(r: dict) -> str:
    return "fixed steps" if r.get("fixed_steps") else f"{r['budget_min']:g} min"


def table(results: list[dict]) -> str:
    cols = [(s, r["scale"]) for r in results for s in r["sets"]]
    # hf: high-frequency energy relative to HR (1.0 = as much fine texture as the ground truth);
    # texture: distance of the local detail statistics to HR's (0 = HR's; gensr.evaluate.texture)
    head = ["method", "params", "budget", "device"] + [f"{s} x{k} PSNR/SSIM-Y (Δ bicubic), hf, texture"
                                                       for s, k in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_scale = {r["scale"]: r for r in results}
    for r in results:
        stopped = f" of {r['planned_steps']} (max_time stopped it)" if r.get("schedule_completed") is False else ""
        cells = [f"{r['variant']} ({r['profile']}, x{r['scale']})", f"{r['params'] / 1e3:.0f}K",
                 _budget(r) + f", {r['steps']} steps{stopped} ({r['train_s'] / 60:.0f} min)", r["device"]]
        for s, k in cols:
            if k != r["scale"]:
                cells.append("")
                continue
            m, b = r["sets"][s], r["bicubic"][s]
            cells.append(f"{m['psnr_y']:.2f} / {m['ssim_y']:.4f} ({m['psnr_y'] - b['psnr_y']:+.2f}), "
                         f"hf {m['hf_ratio']:.2f}{_texture(m)}")
        lines.append("| " + " | ".join(cells) + " |")
        if r.get("self_ensemble"):
            cells = [f"{r['variant']} + x8 self-ensemble (8 passes)", cells[1], cells[2], cells[3]]
            for s, k in cols:
                m, b = (r["self_ensemble"].get(s), r["bicubic"][s]) if k == r["scale"] else (None, None)
                cells.append(f"{m['psnr_y']:.2f} / {m['ssim_y']:.4f} ({m['psnr_y'] - b['psnr_y']:+.2f})" if m else "")
            lines.append("| " + " | ".join(cells) + " |")
    cells = ["bicubic (measured, MATLAB imresize)", "-", "-", "-"]
    for s, k in cols:
        b = by_scale[k]["bicubic"][s]
        cells.append(f"{b['psnr_y']:.2f} / {b['ssim_y']:.4f}, hf {b['hf_ratio']:.2f}{_texture(b)}")
    lines.append("| " + " | ".join(cells) + " |")
    for name, params, ref in REFERENCE:
        cells = [f"{name} (published)" if "published" not in name else name, params, "-", "-"]
        cells += [f"{ref[(s, k)]:.2f}" if (s, k) in ref else "" for s, k in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, required=True, help="folder of HR training photos")
    ap.add_argument("--benchmarks", type=Path, required=True, help="folder with Set5/ and Set14/ (HR + LR_bicubic)")
    ap.add_argument("--variant", default="ae_res")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--budget-min", type=float, default=60.0, help="training wall-clock minutes per scale")
    ap.add_argument("--steps", type=int, default=None,
                    help="train exactly this many steps instead of a wall-clock budget (compares recipes at equal "
                         "work on a machine whose speed drifts; --budget-min is then ignored)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Hydra override ({scale} is replaced), e.g. models.gan.init_from=/abs/path/model.pt (default for gan/vae: this bench's ae_res run at the same scale)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "runs")
    ap.add_argument("--timings", help="timings.json of an earlier real run ({scale} is replaced): its share of wall "
                    "time in optimisation makes the first plan (default: the run folder's previous run, if any)")
    ap.add_argument("--self-ensemble", action="store_true", help="also score the x8 geometric self-ensemble")
    ap.add_argument("--score-only", action="store_true", help="rescore the models already in --work, no training")
    ap.add_argument("--eval", action="append", default=[], metavar="NAME=FOLDER",
                    help="also score this folder of HR images (Set5/Set14 protocol, LR by the project's MATLAB "
                         "bicubic); repeatable")
    args = ap.parse_args(argv)
    if args.steps is not None and args.steps < 10:
        ap.error(f"--steps {args.steps}: at least 10")
    photos, benchmarks, work = args.photos.resolve(), args.benchmarks.resolve(), args.work.resolve()
    for what, p in (("--photos", photos), ("--benchmarks", benchmarks)):
        if not p.is_dir():
            print(f"error: {what} {p}: no such folder", file=sys.stderr)
            return 2
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT / 'mlflow.db'}")
    sets = scored_sets(benchmarks, args.eval)
    work.mkdir(parents=True, exist_ok=True)
    results = [run_scale(args, s, sets, photos, work) for s in args.scales]

    from gensr.io import atomic_write_json

    stamp = time.strftime("%Y-%m-%d %H:%M")
    out = work / f"quality-{args.variant}-{args.profile}-x{'x'.join(map(str, args.scales))}.json"
    atomic_write_json(out, {"date": stamp, "command": " ".join(sys.argv), "results": results})
    print(f"\n{stamp}  {' '.join(sys.argv)}\n")
    print(table(results))
    print(f"\n(results: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
