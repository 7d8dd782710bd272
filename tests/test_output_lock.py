"""One writer per output: a second prepare or training into the same folder is refused at once
(bench/quality.py fine-tunes side by side once raced each other for prepare's staging folder)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from data_photos import ROOT, config, write_photos

from gensr.config import compose
from gensr.data.prepare import prepare
from gensr.errors import BadInputError
from gensr.io import OutputBusyError, exclusive_output
from gensr.training.run import train
from train_fixtures import tiny_overrides

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX flock")


def _try_lock(path) -> subprocess.CompletedProcess:
    """Another process asks for the same output's lock."""
    code = textwrap.dedent(f"""
        from gensr.io import exclusive_output
        with exclusive_output({str(path)!r}, "the other run"):
            print("locked")
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_second_process_is_refused_while_the_first_holds_the_output(tmp_path):
    out = tmp_path / "models" / "ae_res"
    with exclusive_output(out, "training ae_res"):
        other = _try_lock(out)
        assert other.returncode != 0 and "locked" not in other.stdout
        assert "OutputBusyError" in other.stderr and str(out) in other.stderr
    assert _try_lock(out).stdout.strip() == "locked"  # released with the holder's block


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "prepared"
    code = f"import os\nfrom gensr.io import exclusive_output\nwith exclusive_output({str(out)!r}, 'x'):\n    os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9
    with exclusive_output(out, "after a kill -9"):  # the kernel dropped the dead process's lock
        pass


def test_prepare_refuses_an_output_another_run_is_writing(tmp_path):
    folder, out = tmp_path / "photos", tmp_path / "out"
    write_photos(folder, 4)
    with exclusive_output(out, "prepare"):
        with pytest.raises(OutputBusyError, match=f"{out}: another gensr process is writing it now"):
            prepare(config(folder, out), ROOT)
    assert not out.exists() and not (tmp_path / ".out.partial").exists()  # nothing started
    prepare(config(folder, out), ROOT)
    assert (out / "train.json").is_file()


def test_training_refuses_a_variant_another_run_is_training(project):
    cfg = compose(tiny_overrides("ae", steps=2, interval=2), root=project)
    with exclusive_output(project / "checkpoints" / "ae", "training ae"):
        with pytest.raises(OutputBusyError, match="checkpoints/ae: another gensr process"):
            train(cfg)
    assert not (project / "models" / "ae").exists()
    assert train(cfg)["steps"] == 2


def test_the_lock_file_goes_with_its_holder(tmp_path):
    out = tmp_path / "prepared"
    with exclusive_output(out, "prepare"):
        assert (tmp_path / ".prepared.lock").is_file()
    assert list(tmp_path.iterdir()) == []  # nothing left beside the user's output


def test_an_output_path_that_cannot_be_written_is_a_user_error(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "prepared"  # under a file: no process, root included, can create it
    with pytest.raises(BadInputError, match=f"{out}: cannot write this output there"):
        with exclusive_output(out, "prepare"):
            pass
