"""(g) of bench/speed.py, a loop that spends its time training: the share of a real run's wall time
that went to optimisation steps, target >= 0.93 (validation, EMA, checkpoints, MLflow logging, image
grids and the loader together <= 7%).

Nothing is timed here: the figures are read from the models/<variant>/timings.json a training run
writes (gensr.training.timing charges every second of `trainer.fit` to one phase: optim, val,
ckpt, loader, log, ema, other). So the figure is of a real run, e.g. the full-profile ae_res run of
bench/quality.py:

    .venv/bin/python bench/speed.py --only g --run-dir bench/runs/ae_res-full-x2/models/ae_res
"""
from __future__ import annotations

import json
from pathlib import Path

from speed_inputs import ROOT

from gensr.training.timing import LABELS, PHASES

TARGET = 0.93
# the full-profile run of bench/quality.py when there is one, else the pipeline's own model
DEFAULT_RUN_DIRS = (ROOT / "bench" / "runs" / "ae_res-full-x2" / "models" / "ae_res", ROOT / "models" / "ae_res")


def timings_file(run_dir: Path | None) -> Path:
    """The timings.json of `run_dir` (a models/<variant>/ folder, or the file itself)."""
    candidates = [run_dir] if run_dir is not None else list(DEFAULT_RUN_DIRS)
    for c in candidates:
        path = Path(c) / "timings.json" if Path(c).is_dir() else Path(c)
        if path.is_file():
            return path
    raise FileNotFoundError(f"no timings.json in {' or '.join(map(str, candidates))}: train with a gensr that "
                            "writes it (gensr.training.timing), or pass --run-dir models/<variant>")


def section_g(cfg: dict, say) -> list:
    path = timings_file(cfg.get("run_dir"))
    t = json.loads(path.read_text())
    f = t["fractions"]
    optim, overheads = f["optim"], [p for p in PHASES if p != "optim"]
    say(f"(g) {path}: {t.get('variant', '?')}, {t['steps']} steps in {t['wall_s'] / 60:.1f} min of fit: "
        f"{optim:.1%} in optimisation steps ({t['optim_ms_per_step']} ms/step; {t['wall_ms_per_step']} ms/step of "
        f"wall); " + ", ".join(f"{LABELS[p]} {f[p]:.1%}" for p in overheads))
    rows = [("(g) real run: fraction of wall time in optimisation steps", round(optim, 4), f">= {TARGET}",
             optim >= TARGET)]
    rows += [(f"(g) real run: fraction in {LABELS[p]}", round(f[p], 4), "(info)", None) for p in overheads]
    rows += [("(g) real run: ms/step in optimisation", t["optim_ms_per_step"], "(info)", None),
             ("(g) real run: ms/step of wall time", t["wall_ms_per_step"], "(info)", None)]
    return rows
