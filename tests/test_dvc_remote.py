"""A DVC remote round trip (README: sharing data and models): `dvc push` to a local remote, a fresh
`git clone`, `dvc pull`, `dvc status` clean, and the pulled model upscales an image."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from PIL import Image

from data_photos import write_photos
from gensr.checkpoint import load_model
from gensr.metrics import psnr_y
from train_fixtures import TINY_PROFILE, dvc_project, run_cmd

GIT = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
# A folder of 8 small photos in the repo (git-tracked, as a user's would be on a shared drive): prepare
# in seconds instead of the embedded photos' twenty.
PHOTOS = TINY_PROFILE + "data: {source: folder, folder: photos, workers: 1}\n"
OUTS = ["data/prepared/val.json", "models/ae/model.pt", "models/ae/metrics.json", "checkpoints/ae/last.ckpt"]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_push_clone_pull_status_and_upscale(tmp_path):
    proj = dvc_project(tmp_path / "repo", PHOTOS)
    write_photos(proj / "photos", 8, 64, 64)
    run_cmd(["dvc", "repro", "train@ae"], proj)  # prepare + one tiny training (~30 s of CPU)
    run_cmd(["dvc", "remote", "add", "-d", "local", tmp_path / "remote"], proj)
    run_cmd([*GIT, "add", "-A"], proj)
    run_cmd([*GIT, "commit", "-qm", "trained ae"], proj)
    pushed = run_cmd(["dvc", "push"], proj)
    assert "pushed" in pushed.stdout, pushed.stdout

    clone = tmp_path / "clone"
    run_cmd(["git", "clone", "-q", proj, clone], tmp_path)
    assert not (clone / "models").exists()  # data and models come only from the remote
    run_cmd(["dvc", "pull", "--with-deps", "train@ae"], clone)
    status = run_cmd(["dvc", "status", "train@ae"], clone)
    assert "up to date" in status.stdout, status.stdout
    for out in OUTS:
        assert _sha(clone / out) == _sha(proj / out), out

    net, meta = load_model(clone / "models" / "ae" / "model.pt", "ae", 2, 3)
    name = sorted((clone / "data" / "prepared" / "val" / "lr").glob("*.png"))[0].name
    lr = np.asarray(Image.open(clone / "data" / "prepared" / "val" / "lr" / name), np.float32) / 255
    hr = np.asarray(Image.open(clone / "data" / "prepared" / "val" / "hr" / name), np.float32) / 255
    with torch.no_grad():
        sr = net(torch.from_numpy(lr.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)
    assert sr.shape == hr.shape and np.isfinite(sr).all()
    assert psnr_y(np.clip(sr, 0, 1), hr) > 20  # a 4-step model still starts at bicubic
