"""The production install: `pip install gensr` (no extra) into a fresh venv brings numpy, Pillow and
onnxruntime only, and its `gensr upscale` runs an exported model. Needs the package index (~15 s)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export_helpers import LocalSR, export_file, smooth_image

ROOT = Path(__file__).resolve().parents[1]
# What only `gensr[train]` may bring (distribution names as `pip list` spells them).
TRAINING_STACK = {"torch", "lightning", "pytorch-lightning", "hydra-core", "omegaconf", "mlflow", "mlflow-skinny",
                  "dvc", "onnx", "onnxscript", "scipy", "scikit-image", "matplotlib", "tqdm"}
CORE = {"gensr", "numpy", "pillow", "onnxruntime-gpu"}


def _env() -> dict[str, str]:
    """The user's pip settings (index, find-links, constraints), none of this interpreter's paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def _run(cmd: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory) -> Path:
    """A venv with `pip install <a copy of the project>`: the copy keeps pip's in-tree build out of the checkout."""
    tmp = tmp_path_factory.mktemp("core_install")
    src = tmp / "gensr"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", venv], cwd=tmp)
    assert made.returncode == 0, made.stderr
    pip = _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", src], cwd=tmp)
    assert pip.returncode == 0, f"pip install of the core failed (is the package index reachable?):\n{pip.stderr}"
    return venv


def test_core_install_has_no_training_stack(core_venv):
    listed = _run([core_venv / "bin" / "python", "-m", "pip", "list", "--format=json"], cwd=core_venv)
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert CORE <= names
    assert not names & TRAINING_STACK, f"the core install pulled {sorted(names & TRAINING_STACK)}"
    for module in ("torch", "hydra", "mlflow", "dvc", "scipy"):  # nothing importable from elsewhere either
        probe = _run([core_venv / "bin" / "python", "-c", f"import {module}"], cwd=core_venv)
        assert probe.returncode != 0, f"{module} is importable in the core venv"


def test_core_install_upscales_with_an_exported_model(core_venv, tmp_path):
    model = export_file(LocalSR(scale=2, channels=3), tmp_path / "model.onnx", "local", 2, 3)
    Image.fromarray(smooth_image(np.random.default_rng(0), 37, 52)).save(tmp_path / "in.png")
    gensr = core_venv / "bin" / "gensr"
    assert _run([gensr, "upscale", "--help"], cwd=tmp_path).returncode == 0
    done = _run([gensr, "upscale", tmp_path / "in.png", "-o", tmp_path / "core", "-m", model, "--provider", "cpu"],
                cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "core" / "in.png") as out:
        assert out.size == (104, 74) and out.mode == "RGB"
        core = np.asarray(out)
    # The same command from the development install (the training stack beside it) writes the same pixels.
    from gensr.cli import main

    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "dev"), "-m", str(model),
                 "--provider", "cpu"]) == 0
    assert np.array_equal(core, np.asarray(Image.open(tmp_path / "dev" / "in.png")))


def test_core_install_names_the_training_extra(core_venv, tmp_path):
    (tmp_path / "conf").mkdir()
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    done = _run([core_venv / "bin" / "gensr", "params"], cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "gensr params` needs the training extra" in lines[0], done.stderr
    assert "pip install 'gensr[train]'" in lines[0]
