import os
from pathlib import Path

import pytest
from train_fixtures import make_project, use_project

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BENCHMARKS = SHARED / "benchmarks"

# Tests never write to the user's MLflow database.
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def benchmarks_dir() -> Path:
    if not (BENCHMARKS / "Set5" / "HR").is_dir():
        pytest.skip(f"{BENCHMARKS} is absent (the shared Set5/Set14 files are not beside this checkout)")
    return BENCHMARKS


@pytest.fixture(scope="session")
def project_template(tmp_path_factory) -> Path:
    """conf/, params.yaml and a few prepared pairs (train_fixtures.make_project), made once."""
    return make_project(tmp_path_factory.mktemp("gensr_project"))


@pytest.fixture
def project(project_template, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the template project, as the cwd (gensr.config.repo_root finds it)."""
    return use_project(project_template, tmp_path / "proj", monkeypatch)
