import os
from pathlib import Path

import pytest

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
