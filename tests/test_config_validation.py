"""A bad configuration is refused where it is composed: `gensr params` and every stage script answer
one line naming the key, the value and what is allowed, exit 2, no traceback, and change nothing.

The matrix calls each real entry point in-process (`gensr.cli.main`, each pipelines/*.py `main`) on a
copy of the project: a subprocess per case would pay Python's start-up each time. One subprocess
per entry point checks the real exit status, and that torch was never imported.
"""
from __future__ import annotations

import functools
import hashlib
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from gensr import cli, errors, schema
from train_fixtures import ROOT
SCRIPTS = ("prepare", "train", "evaluate", "export")

# (overrides, the key the message must name, what it must say is allowed)
PARAMS_CASES = [
    (["degradation.scale=5"], "degradation.scale=5", "2, 3, 4"),
    (["data.split.val_fraction=1.5"], "data.split.val_fraction=1.5", "[0, 1)"),
    (["data.split.val_fraction=0.5", "data.split.test_fraction=0.5"],
     "data.split.val_fraction + data.split.test_fraction = 1", "< 1"),
    (["data.on_bad_image=ignore"], "data.on_bad_image=ignore", "skip, fail"),
    (["data.channels=2"], "data.channels=2", "1, 3"),
    (["data=folder"], "data.folder", "data.folder=/path/to/photos"),
    (["degradation=nonexistent"], "degradation=nonexistent", "bicubic, realistic"),
    (["profile=fast"], "profile=fast", "full, gpu, quick"),
    (["datamodule.patch_size=47"], "datamodule.patch_size=47", "multiple of degradation.scale=2"),
    (["datamodule.batch_size=0"], "datamodule.batch_size=0", ">= 1"),
    (["trainer.max_steps=0"], "trainer.max_steps=0", ">= 1"),
    (["trainer.max_steps.gan=-5"], "trainer.max_steps.gan=-5", ">= 1"),
    (["models.gan.optim.optimizer.lr=0"], "models.gan.optim.optimizer.lr=0", "> 0"),
    (["models.aae.optim_d.optimizer.lr=-0.001"], "models.aae.optim_d.optimizer.lr=-0.001", "> 0"),
    (["evaluate.on_missing_benchmark=ignore"], "evaluate.on_missing_benchmark=ignore", "warn, fail"),
    (["export.calibration.method=kmeans"], "export.calibration.method=kmeans", "entropy, minmax, percentile"),
    (["variant=nope"], "variant=nope", "ae, ae_res, gan"),
    (["+models.ae.trainer.max_steps=5"], "models.ae.trainer", "trainer.<key>={default: ..., ae: ...}"),
    (["no_such_key=1"], "no_such_key", "+no_such_key=1"),
    (["nets.residual_attention_ae.features=0"], "nets.residual_attention_ae.features=0", ">= 1"),
    (["models.vae.net.noise_channels=0"], "models.vae.net.noise_channels=0", ">= 1"),
    (["models.ae_res.net.rep=maybe"], "models.ae_res.net.rep=maybe", "true or false"),
    (["models.ae_res.net.zero_last=2"], "models.ae_res.net.zero_last=2", "true or false"),
    (["models.ae_res.net.upsampler=nearest"], "models.ae_res.net.upsampler=nearest", "progressive, direct"),
    (["models.gan.losses.band.window=0"], "models.gan.losses.band.window=0", ">= 1"),
    (["models.gan.losses.structure={_target_:gensr.losses.StructureTensorLoss,octaves:0}"],
     "models.gan.losses.structure.octaves=0", ">= 1"),
    (["+models.ae_res.losses.l1.luma_weight=1.5"], "models.ae_res.losses.l1.luma_weight=1.5", "in [0, 1]"),
    # gan's net is ae_res's (`${models.ae_res.net}`): it is resized there
    (["models.gan.net.n_blocks=3"], "models.gan.net.n_blocks", "set models.ae_res.net.n_blocks=3 instead"),
]
STAGE_CASES = [
    ("prepare", ["degradation.scale=5"], "degradation.scale=5", "2, 3, 4"),
    ("prepare", ["data.on_bad_image=ignore"], "data.on_bad_image=ignore", "skip, fail"),
    ("prepare", ["data.source=folder"], "data.folder", "data.folder=/path/to/photos"),
    ("prepare", ["degradation=realistic"], "degradation=realistic", "gensr params degradation=realistic"),
    ("train", ["variant=ae", "trainer.max_steps=0"], "trainer.max_steps=0", ">= 1"),
    ("train", ["variant=ae", "datamodule.patch_size=33"], "datamodule.patch_size=33", "multiple of"),
    ("train", ["variant=ae", "models.ae.optim.optimizer.lr=-1"], "models.ae.optim.optimizer.lr=-1", "> 0"),
    ("train", ["variant=nope"], "variant=nope", "ae, ae_res"),
    ("train", [], "variant is not set", "variant=<one of ae, ae_res"),
    ("train", ["variant=ae", "trainer.nonexistent=1"], "trainer.nonexistent", "+trainer.nonexistent=1"),
    ("evaluate", ["evaluate.device=tpu"], "evaluate.device=tpu", "auto, cpu, cuda or cuda:N"),
    ("evaluate", ["evaluate.crop_size=0"], "evaluate.crop_size=0", ">= 1"),
    ("export", ["export.opset=3"], "export.opset=3", ">= 7"),
    ("export", ["degradation.scale=8"], "degradation.scale=8", "2, 3, 4"),
]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("GENSR_DEBUG", raising=False)


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@functools.cache
def _script_main(name: str):
    return runpy.run_path(str(ROOT / "pipelines" / f"{name}.py"), run_name=f"gensr_{name}_stage")["main"]


def _assert_refused(code: int, err: str, key: str, allowed: str) -> None:
    lines = err.strip().splitlines()
    assert code == errors.EXIT_USER_ERROR, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert key in lines[0] and allowed in lines[0], lines[0]


@pytest.mark.parametrize("overrides,key,allowed", PARAMS_CASES, ids=[" ".join(c[0]) for c in PARAMS_CASES])
def test_gensr_params_refuses(project, capsys, overrides, key, allowed):
    before = snapshot(project)
    code = cli.main(["params", *overrides])
    _assert_refused(code, capsys.readouterr().err, key, allowed)
    assert snapshot(project) == before  # params.yaml untouched, no temporary file left


@pytest.mark.parametrize("script,overrides,key,allowed", STAGE_CASES,
                         ids=[f"{c[0]} {' '.join(c[1])}" for c in STAGE_CASES])
def test_stage_script_refuses(project, capsys, script, overrides, key, allowed):
    before = snapshot(project)
    code = _script_main(script)(overrides)
    _assert_refused(code, capsys.readouterr().err, key, allowed)
    assert snapshot(project) == before


# A stage script as DVC runs it, then whether torch was imported (on stdout).
RUN_STAGE = """import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("torch" in sys.modules)
"""


@pytest.mark.parametrize("entry", ["params", *SCRIPTS])
def test_real_exit_status_and_no_torch(project, entry):
    bad = ["degradation.scale=5"] + (["variant=ae"] if entry == "train" else [])
    before = snapshot(project)
    if entry == "params":
        cmd = [sys.executable, "-c", "import sys; from gensr.cli import main; sys.exit(main())", "params", *bad]
    else:
        cmd = [sys.executable, "-c", RUN_STAGE, str(ROOT / "pipelines" / f"{entry}.py"), *bad]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=120)
    _assert_refused(proc.returncode, proc.stderr, "degradation.scale=5", "2, 3, 4")
    assert proc.stdout.strip() in ("", "False")  # torch never imported
    assert snapshot(project) == before


def test_debug_shows_the_traceback_of_a_user_error(project, capsys, monkeypatch):
    monkeypatch.setenv("GENSR_DEBUG", "1")
    assert cli.main(["params", "trainer.max_steps=0"]) == errors.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "error: trainer.max_steps=0: must be an integer >= 1"


def test_entry_point_exit_codes(capsys):
    def bug(argv):
        raise KeyError("oops")

    def interrupted(argv):
        raise KeyboardInterrupt("stopped at step 3")

    assert errors.entry_point(bug)([]) == errors.EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'oops'" in err  # a bug keeps its traceback
    assert errors.entry_point(interrupted)([]) == errors.EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "interrupted: stopped at step 3"


def test_a_missing_library_is_one_line_naming_it_and_the_interpreter(capsys):
    # `dvc repro` outside the project's environment runs the stages with another `python`.
    def wrong_python(argv):
        import gensr_test_no_such_library  # noqa: F401

    def broken_install(argv):
        raise ModuleNotFoundError("No module named 'gensr.nowhere'", name="gensr.nowhere")

    assert errors.entry_point(wrong_python)([]) == errors.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "'gensr_test_no_such_library' is not installed in " + sys.executable in err and ".venv/bin/activate" in err
    assert errors.entry_point(broken_install)([]) == errors.EXIT_BUG  # part of gensr missing: a bug
    assert "Traceback" in capsys.readouterr().err


def test_a_stage_run_by_a_python_without_the_pipeline_says_so_in_one_line(tmp_path):
    # `python -S`: no site-packages, as when DVC's `python` is not the project's environment.
    r = subprocess.run([sys.executable, "-S", str(ROOT / "pipelines" / "evaluate.py")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == errors.EXIT_USER_ERROR, r.stderr
    assert r.stderr.startswith("error: Python module 'omegaconf' is not installed in ") and "Traceback" not in r.stderr


def test_user_facing_errors_are_user_errors():
    from gensr.checkpoint import CheckpointMismatchError
    from gensr.infer.session import ModelError
    from gensr.io import BadImageError
    from gensr.tracking import TrackingUnavailableError

    for cls in (CheckpointMismatchError, ModelError, BadImageError, TrackingUnavailableError, schema.ConfigError):
        assert issubclass(cls, errors.UserError), cls


def test_schema_allows_what_the_code_supports():
    """The schema names allowed values without importing torch; these are the modules' own sets."""
    from gensr.archs.blocks import SCALES, UPSAMPLERS
    from gensr.export.lighten import CALIBRATION_METHODS
    from gensr.losses.adversarial import GAN_TYPES
    from gensr.training.schedule import KINDS

    assert schema.SCALES == SCALES and schema.GAN_TYPES == GAN_TYPES and schema.SCHEDULE_KINDS == KINDS
    assert set(schema.CALIBRATION_METHODS) == set(CALIBRATION_METHODS)
    assert schema.UPSAMPLERS == UPSAMPLERS
