"""Bad input files for the train, evaluate and export stages (issue 10, requirement 9). Bad config:
test_config_validation.py; prepare and upscale: test_data_bad_inputs.py, test_upscale_bad_inputs.py.

Each case breaks one input of a tiny project, runs the real stage script's `main` in-process and
checks: exit status 2, one `error:` line naming the file (or key), no traceback, and every file
outside the stage's outputs byte-identical. A corrupt checkpoints/<v>/last.ckpt is not an error:
train starts fresh with a one-line note; evaluate never reads the prepared manifests. One case per
stage runs its script as DVC does, in a fresh interpreter, for the real exit status.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning  # noqa: F401  (its and MLflow's log handlers bind sys.stderr at import: the session's,
import mlflow  # not one test's captured stream, closed by the next test)
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

import eval_fixtures as fx
from gensr.checkpoint import load_model, save_model
from gensr.errors import EXIT_USER_ERROR
from test_config_validation import RUN_STAGE, _script_main, snapshot
from train_fixtures import ROOT, make_project, tiny_overrides, use_project

P = "data/prepared"
TRAIN = tiny_overrides("ae")
# gan keeps its default init_from (models/ae_res/model.pt): the fine-tune's input file.
GAN = [o for o in tiny_overrides("gan") if not o.startswith(("models.gan.init_from=", "train_from.gan="))]
EVALUATE = ["variants=[ae]", "evaluate.mlflow=false", "~evaluate.benchmarks.set5", "evaluate.device=cpu",
            "evaluate.threads=1"]
EXPORT = ["variants=[ae]", "export.register=false", "export.speed.shape=[1,32,32]", "export.speed.warmup=1",
          "export.speed.repeats=1", "export.calibration.patches=4", "export.calibration.patch_size=16",
          "export.tiling_check.tile=16", "export.tiling_check.overlap=4", "export.parity_shapes=[[17,23]]",
          "export.parity_batches=[1]"]
# What each run writes (its DVC outputs, and the MLflow store train logs to): everything else is input.
RUNS = {
    "train": ("train", TRAIN, ("models/ae/", "checkpoints/ae/", "mlflow.db", "mlruns/")),
    "gan": ("train", GAN, ("models/gan/", "checkpoints/gan/", "mlflow.db", "mlruns/")),
    "evaluate": ("evaluate", EVALUATE, ("reports/",)),
    "export": ("export", EXPORT, ("exports/",)),
}


@pytest.fixture(scope="session")
def stage_template(tmp_path_factory) -> Path:
    """conf/, params.yaml, data/prepared/{train,val,test} + manifests, models/ae/model.pt, champion.json,
    an empty MLflow store."""
    root = make_project(tmp_path_factory.mktemp("bad_inputs"))
    fx.write_split(root / P, 2, "test")
    (root / P / "test.json").write_text(json.dumps({"split": "test", "names": [p[0] for p in fx.PHOTOS]}))
    fx.write_model(root / "models", "ae", 2)
    (root / "reports").mkdir()
    (root / "reports" / "champion.json").write_text(json.dumps({"variant": "ae", "psnr_y": 30.0, "set": "test"}))
    mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()  # its tables: made once, copied
    return root


@pytest.fixture
def stage_project(stage_template, tmp_path, monkeypatch) -> Path:
    """A fresh copy of stage_template, as the cwd."""
    return use_project(stage_template, tmp_path / "proj", monkeypatch)


@pytest.fixture(autouse=True)
def _own_store(stage_project, monkeypatch):
    monkeypatch.delenv("GENSR_DEBUG", raising=False)
    # MLflow exports the URI it is given to the environment: setenv makes teardown drop it again.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{stage_project / 'mlflow.db'}")


def inputs(root: Path, outputs: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in snapshot(root).items() if not k.startswith(outputs)}


def assert_refused(code: int, err: str, names: str, says: str) -> None:
    """Exit 2 and one `error:` line, the last, naming the file or key; progress logs may precede it."""
    found = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == EXIT_USER_ERROR and "Traceback" not in err, err
    assert len(found) == 1 and err.strip().splitlines()[-1] == found[0], err
    assert names in found[0] and says in found[0], found[0]


# ---- ways to break a file ----------------------------------------------------------------------
def _png(path: Path, h: int, w: int) -> None:
    Image.fromarray(fx.photo("coffee", h, w)).save(path)


def _truncate(rel: str) -> Callable[[Path], None]:
    def run(d: Path) -> None:
        data = (d / rel).read_bytes()
        (d / rel).write_bytes(data[: len(data) // 2])
    return run


def _write(rel: str, data: bytes) -> Callable[[Path], None]:
    def run(d: Path) -> None:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return run


def _remove(rel: str) -> Callable[[Path], None]:
    def run(d: Path) -> None:
        p = d / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return run


def _empty_folder(rel: str) -> Callable[[Path], None]:
    return lambda d: [p.unlink() for p in (d / rel).iterdir()]


def _resized(rel: str, h: int, w: int) -> Callable[[Path], None]:
    return lambda d: _png(d / rel, h, w)


def _copy(src: str, dst: str) -> Callable[[Path], None]:
    return lambda d: shutil.copyfile(d / src, d / dst)


def _model(rel: str, variant: str = "ae", scale: int = 2, channels: int = 3, how: str = "gensr"):
    """A model file at `rel`: gensr's format for another variant/scale/channels, or another kind of file."""
    def run(d: Path) -> None:
        torch.manual_seed(0)
        net_cfg = {**fx.NETS["ae"], "scale": scale, "channels": channels}
        net = instantiate(net_cfg)
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        state = net.state_dict()
        if how == "module":  # torch.save of the whole net: pickled code, refused unread
            torch.save(net, path)
        elif how == "state_dict":  # a plain torch file, no gensr metadata
            torch.save({"state_dict": state}, path)
        else:
            if how == "short":  # weights of an older version of the architecture
                state.pop(next(iter(state)))
            save_model(path, net_cfg, state, {"variant": variant, "scale": scale, "channels": channels})
    return run


MODEL = "models/ae/model.pt"
INIT = "models/ae_res/model.pt"
NOT_AN_IMAGE = b"these are notes, not pixels\n"

# (run, break it, what the error line must name, what it must say)
CASES: dict[str, tuple[str, Callable[[Path], None], str, str]] = {
    "train: no prepared data": ("train", _remove(P), f"{P}/train", "run the prepare stage"),
    "train: no val split": ("train", _remove(f"{P}/val"), f"{P}/val", "run the prepare stage"),
    "train: empty val/hr": ("train", _empty_folder(f"{P}/val/hr"), f"{P}/val/hr", "holds no images"),
    "train: LR partner missing": ("train", _remove(f"{P}/train/lr/coffee.png"), f"{P}/train/lr/coffee.png",
                                  "no LR partner"),
    "train: HR truncated": ("train", _truncate(f"{P}/train/hr/coffee.png"), f"{P}/train/hr/coffee.png",
                            "truncated"),
    "train: HR not an image": ("train", _write(f"{P}/train/hr/chelsea.png", NOT_AN_IMAGE),
                               f"{P}/train/hr/chelsea.png", "not an image"),
    "train: LR of another scale": ("train", _resized(f"{P}/train/lr/astronaut.png", 32, 32),
                                   f"{P}/train/lr/astronaut.png", "scale 2"),
    "train: image smaller than the patch": (
        "train", lambda d: (_png(d / P / "train/hr/coffee.png", 16, 16), _png(d / P / "train/lr/coffee.png", 8, 8)),
        "coffee", "datamodule.patch_size=32"),
    "gan: init_from missing": ("gan", lambda d: None, "models.gan.init_from", INIT),
    "gan: init_from corrupt": ("gan", _write(INIT, b"\0" * 100), INIT, "not a readable gensr model file"),
    "gan: init_from another architecture": ("gan", _model(INIT, "ae_res"), INIT, "same architecture"),
    "gan: init_from another scale": ("gan", _model(INIT, "ae_res", scale=3), INIT, "scale=3"),
    "evaluate: no test split": ("evaluate", _remove(f"{P}/test"), f"{P}/test", "run the prepare stage"),
    "evaluate: empty test/hr": ("evaluate", _empty_folder(f"{P}/test/hr"), f"{P}/test/hr", "holds no images"),
    "evaluate: LR missing": ("evaluate", _remove(f"{P}/test/lr/coffee.png"), f"{P}/test/lr",
                             "no LR image for coffee"),
    "evaluate: LR of another size": ("evaluate", _resized(f"{P}/test/lr/coffee.png", 20, 20),
                                     f"{P}/test/lr/coffee.png", "expected"),
    "evaluate: HR truncated": ("evaluate", _truncate(f"{P}/test/hr/chelsea.png"), f"{P}/test/hr/chelsea.png",
                               "truncated"),
    "evaluate: model missing": ("evaluate", _remove(MODEL), MODEL, "dvc repro train@ae"),
    "evaluate: model empty": ("evaluate", _write(MODEL, b""), MODEL, "not a readable gensr model file"),
    "evaluate: model truncated": ("evaluate", _truncate(MODEL), MODEL, "not a readable gensr model file"),
    "evaluate: model is a PNG": ("evaluate", _copy(f"{P}/test/hr/coffee.png", MODEL), MODEL,
                                 "not a readable gensr model file"),
    "evaluate: model is a pickled net": ("evaluate", _model(MODEL, how="module"), MODEL, "not a readable"),
    "evaluate: model is a bare state_dict": ("evaluate", _model(MODEL, how="state_dict"), MODEL,
                                             "not a gensr model file"),
    "evaluate: model of another variant": ("evaluate", _model(MODEL, "gan"), MODEL, "variant='gan'"),
    "evaluate: model of another scale": ("evaluate", _model(MODEL, scale=4), MODEL, "scale=4"),
    "evaluate: model of grey images": ("evaluate", _model(MODEL, channels=1), MODEL, "channels=1"),
    "evaluate: model of older weights": ("evaluate", _model(MODEL, how="short"), MODEL, "weights do not fit"),
    "evaluate: history.csv not text": ("evaluate", _write("models/ae/history.csv", b"\xff\xfe\x00\x89"),
                                       "models/ae/history.csv", "not a readable history.csv"),
    "export: no test split": ("export", _remove(f"{P}/test"), f"{P}/test/lr", "does not exist"),
    "export: no train/lr to calibrate on": ("export", _remove(f"{P}/train/lr"), f"{P}/train/lr", "does not exist"),
    "export: HR partner missing": ("export", _remove(f"{P}/test/hr/coffee.png"), f"{P}/test/hr/coffee.png",
                                   "no HR partner"),
    "export: HR of another size": ("export", _resized(f"{P}/test/hr/coffee.png", 40, 40),
                                   f"{P}/test/lr/coffee.png", "not x2"),
    "export: LR not an image": ("export", _write(f"{P}/test/lr/astronaut.png", NOT_AN_IMAGE),
                                f"{P}/test/lr/astronaut.png", "not an image"),
    "export: model missing": ("export", _remove(MODEL), MODEL, "dvc repro train@ae"),
    "export: model truncated": ("export", _truncate(MODEL), MODEL, "not a readable gensr model file"),
    "export: model of another scale": ("export", _model(MODEL, scale=3), MODEL, "scale=3"),
    "export: champion.json not JSON": ("export", _write("reports/champion.json", b'{"variant": "ae",'),
                                       "reports/champion.json", "not JSON"),
    "export: champion.json not a record": ("export", _write("reports/champion.json", b'["ae"]'),
                                           "reports/champion.json", 'not a champion record {"variant": ...}'),
}


# One case per stage also as DVC runs it, for the real exit status (the cheapest of each: a process
# costs seconds).
PROCESS_CASES = ["gan: init_from missing", "evaluate: model truncated", "export: champion.json not JSON"]
MATRIX = [pytest.param(c, False, id=c) for c in CASES] + [pytest.param(c, True, id=f"{c} (process)")
                                                          for c in PROCESS_CASES]


@pytest.mark.parametrize("case,process", MATRIX)
def test_bad_input_is_refused_in_one_line_and_inputs_are_untouched(case, process, stage_project, capsys):
    run, breaks, names, says = CASES[case]
    script, argv, outputs = RUNS[run]
    breaks(stage_project)
    before = inputs(stage_project, outputs)
    if process:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        proc = subprocess.run([sys.executable, "-c", RUN_STAGE, str(ROOT / "pipelines" / f"{script}.py"), *argv],
                              cwd=stage_project, env=env, capture_output=True, text=True, timeout=180)
        code, err = proc.returncode, proc.stderr
    else:
        code, err = _script_main(script)(argv), capsys.readouterr().err
    assert_refused(code, err, names, says)
    assert inputs(stage_project, outputs) == before


def test_corrupt_last_checkpoint_is_a_note_and_a_fresh_start(stage_project, capsys):
    ckpt = stage_project / "checkpoints" / "ae" / "last.ckpt"
    _write("checkpoints/ae/last.ckpt", b"PK\x03\x04 half a checkpoint")(stage_project)
    before = inputs(stage_project, RUNS["train"][2])
    assert _script_main("train")(TRAIN) == 0
    out, err = capsys.readouterr()
    notes = [line for line in out.splitlines() if "resum" in line]
    assert len(notes) == 1 and notes[0].startswith(f"[ae] not resuming {ckpt}: unreadable"), out
    assert notes[0].endswith("starting fresh") and "Traceback" not in err
    assert load_model(stage_project / MODEL, variant="ae", scale=2, channels=3)[1]["steps"] == 4
    assert torch.load(ckpt, weights_only=True, map_location="cpu")["gensr"]["variant"] == "ae"
    assert inputs(stage_project, RUNS["train"][2]) == before


def test_evaluate_does_not_read_the_manifests(stage_project, capsys):
    """The prepared images are evaluate's input; a broken data/prepared/test.json changes nothing."""
    (stage_project / P / "test.json").write_text("{not json")
    before = inputs(stage_project, RUNS["evaluate"][2])
    assert _script_main("evaluate")(EVALUATE) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert json.loads((stage_project / "reports" / "champion.json").read_text())["variant"] == "ae"
    assert inputs(stage_project, RUNS["evaluate"][2]) == before


@pytest.mark.parametrize("run,override,theirs,names,says", [
    ("evaluate", [], "reports/comparisons/thesis.txt", "reports/comparisons", "holds files gensr did not write"),
    ("export", ["export.out_dir=mine"], "mine/models/thesis.txt", "mine/models", "holds files gensr did not write"),
    ("export", ["export.out_dir=mine"], "mine/validation.json", "mine/validation.json", "no export was written"),
])
def test_an_output_folder_holding_files_gensr_did_not_write_is_not_replaced(run, override, theirs, names, says,
                                                                             stage_project, capsys):
    """evaluate and export replace their output folder whole: `export.out_dir=~` by mistake must
    not delete ~/models (or overwrite a validation.json of the user's). Refused in one line before
    any work, every file where it was."""
    _write(theirs, b"years of work\n")(stage_project)
    script, argv, _ = RUNS[run]
    before = snapshot(stage_project)
    code = _script_main(script)([*argv, *override])
    assert_refused(code, capsys.readouterr().err, names, says)
    assert snapshot(stage_project) == before
