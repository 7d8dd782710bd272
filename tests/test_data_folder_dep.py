"""The photo folder is a DVC dependency of `prepare` (dvc.yaml: `${data.photos_dep}`): adding,
removing or editing a photo shows in `dvc status` as `prepare` changed and `dvc repro` reruns it.
Every entry of the folder that is not a usable photo is listed in the manifests' `skipped` block."""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from data_photos import ROOT, manifests, photo_array, record_of, run, write_photos
from PIL import Image

from gensr.config import compose
from gensr.data import sources
from train_fixtures import dvc_project

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("overrides", [
    [], ["data=folder", "data.folder=/data/photos"], ["data.source=folder", "data.folder=rel/photos"],
    ["profile=full", "data.folder=/data/DIV2K"], ["data=folder", "data.folder=/x", "data.source=embedded"],
])
def test_dvc_dependency_is_the_folder_the_stage_reads(overrides):
    """dvc.yaml templates `${data.photos_dep}`: the folder whenever the stage reads one, however the
    folder source was selected; for the embedded photos a file that exists (never null)."""
    data = compose(overrides, root=ROOT).data
    if data.source == "folder":
        assert data.photos_dep == data.folder
    else:
        assert (ROOT / data.photos_dep).is_file()
    assert "${data.photos_dep}" in (ROOT / "dvc.yaml").read_text().split("\n  train:")[0]


def test_entries_that_are_not_photos_are_listed_with_a_reason(tmp_path, caplog):
    folder = tmp_path / "photos"
    write_photos(folder, 4)
    (folder / "notes.txt").write_text("shot list\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_photos(folder / "x.png", 1, prefix="inside")  # a folder named like an image: searched, not read
    (folder / "broken.png").symlink_to(tmp_path / "gone.png")
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.mkfifo(folder / "pipe.png")
    write_photos(tmp_path / "elsewhere", 1, prefix="far")
    (folder / "linked").symlink_to(tmp_path / "elsewhere")  # not followed: DVC would not see changes there
    (folder / "z_alias.png").symlink_to(folder / "p0.png")  # a link to a file is read: a duplicate here
    with caplog.at_level(logging.WARNING, logger="gensr.prepare"):
        summary = run(folder, tmp_path / "out")
    skipped = manifests(tmp_path / "out")["test"]["skipped"]
    reasons = {f["source"]: f["reason"] for f in skipped["files"]}
    assert sorted(reasons) == [".DS_Store", "broken.png", "linked/", "loop.jpg", "notes.txt",
                               "pipe.png", "x.png", "z_alias.png"]
    assert skipped["by_reason"] == {
        "broken or looping link": 2, "duplicate": 1, "folder named like an image": 1, "link to a folder": 1,
        "not a regular file": 1, "other file type": 2}
    assert "other file type (.txt)" in reasons["notes.txt"] and "p0.png" in reasons["z_alias.png"]
    assert summary["skipped"] == 8 and sum(summary["counts"].values()) == 5
    assert record_of(tmp_path / "out", "x.png/inside0.png")["name"] == "x.png__inside0"
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "2 file(s)" in warned and "notes.txt" in warned and "linked" in warned


def test_other_files_are_listed_but_never_fail_the_run(tmp_path):
    folder = tmp_path / "photos"
    write_photos(folder, 3)
    (folder / "README.md").write_text("my photos")
    run(folder, tmp_path / "out", on_bad_image="fail")  # fail applies to photos, not to a README
    (entry,) = manifests(tmp_path / "out")["train"]["skipped"]["files"]
    assert entry["source"] == "README.md" and entry["reason"].startswith("other file type")


def test_an_unreadable_photo_is_skipped_not_fatal(tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    write_photos(folder, 4)
    real = sources.sha256_file

    def no_permission(path):  # what a chmod 000 file gives a non-root user
        if path.name == "p2.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(sources, "sha256_file", no_permission)
    run(folder, tmp_path / "out")
    (entry,) = manifests(tmp_path / "out")["val"]["skipped"]["files"]
    assert entry == {"source": "p2.png", "reason": "cannot read the file: permission denied", "split": None}


def _sh(cmd: list[str], cwd: Path, env: dict) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _env() -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _changed(status: str) -> bool:
    return "prepare:" in status and "changed deps" in status


@pytest.mark.skipif(shutil.which("git") is None or not (BIN / "dvc").exists(), reason="needs git and dvc")
def test_photo_changes_show_in_dvc_status_and_rerun_prepare(tmp_path):
    repo = dvc_project(tmp_path / "repo")  # committed, params.yaml of the embedded default
    env = _env()
    photos = tmp_path / "photos"
    write_photos(photos, 5)
    # The embedded default (data.folder null) still gives dvc.yaml a dependency path to template.
    assert "prepare:" in _sh(["dvc", "status", "prepare"], repo, env)

    # DVC composes the folder into params.yaml and the dependency path follows it.
    _sh(["dvc", "exp", "run", "-S", "data=folder", "-S", f"data.folder={photos}", "-S", "data.min_side=16",
         "-S", "data.workers=1", "prepare"], repo, env)
    assert manifests(repo / "data" / "prepared")["train"]["folder"] == str(photos)
    assert "up to date" in _sh(["dvc", "status", "prepare"], repo, env)

    # Each change alone, from the recorded state, shows in `dvc status` (then is undone) ...
    prepared = repo / "data" / "prepared"
    original = (photos / "p1.png").read_bytes()
    changes = {
        "add": (lambda: Image.fromarray(photo_array(seed=123)).save(photos / "new.png"),
                lambda: (photos / "new.png").unlink()),
        "edit": (lambda: Image.fromarray(photo_array(seed=321)).save(photos / "p1.png"),  # same size
                 lambda: (photos / "p1.png").write_bytes(original)),
        "remove": (lambda: (photos / "p3.png").rename(tmp_path / "p3.png"),
                   lambda: (tmp_path / "p3.png").rename(photos / "p3.png")),
    }
    for what, (change, undo) in changes.items():
        change()
        status = _sh(["dvc", "status", "prepare"], repo, env)
        assert _changed(status) and str(photos) in status, (what, status)
        undo()
    # ... and all three together rerun prepare, whose manifests then hold the new set.
    old_sha = record_of(prepared, "p1.png")["source_sha256"]
    for change, _ in changes.values():
        change()
    assert "Running stage 'prepare'" in _sh(["dvc", "repro", "prepare"], repo, env)
    assert sum(manifests(prepared)["train"]["counts"].values()) == 5
    assert record_of(prepared, "new.png") and record_of(prepared, "p1.png")["source_sha256"] != old_sha
    with pytest.raises(KeyError):
        record_of(prepared, "p3.png")
    assert "up to date" in _sh(["dvc", "status", "prepare"], repo, env)

    # A relative data.folder is relative to the repo root, for DVC as for the stage (test_data_prepare).
    shutil.copytree(photos, repo / "my_photos")
    _sh([str(BIN / "gensr"), "params", "data=folder", "data.folder=my_photos", "data.min_side=16",
         "data.workers=1"], repo, env)
    status = _sh(["dvc", "status", "prepare"], repo, env)
    # "modified", not "deleted": DVC hashed the folder where the stage will look for it.
    assert re.search(r"modified:\s+my_photos\n", status) and "deleted" not in status, status
