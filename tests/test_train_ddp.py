"""DDP on the CPU: `trainer.strategy=ddp trainer.devices=2` through the real command line, and the
data pipeline's guarantees that make it (and resume) correct."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from gensr.data.pairs import Pair
from gensr.training.datamodule import EpochSampler, PatchDataset
from train_fixtures import run_train, tiny_overrides


def test_ddp_two_cpu_processes(project):
    overrides = tiny_overrides("ae", steps=4, interval=2) + [
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.threads=1",
        "datamodule.num_workers=1",
    ]
    proc = run_train(project, overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr
    metrics = json.loads((project / "models" / "ae" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and np.isfinite(metrics["val_psnr_y"])
    with open(project / "models" / "ae" / "history.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [2, 4]
    # rank 0 alone talks to MLflow: one run, named after the variant
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("gensr").experiment_id])
    assert [r.info.run_name for r in runs] == ["ae"] and runs[0].info.run_id == metrics["mlflow_run_id"]
    assert torch.load(project / "checkpoints" / "ae" / "last.ckpt", weights_only=True)["gensr"]["iteration"] == 4


def _kron_pair(name: str, lr: np.ndarray, s: int) -> Pair:
    return Pair(name, lr, np.kron(lr, np.ones((s, s, 1), np.uint8)))


def test_crops_are_aligned_deterministic_and_split_across_ranks():
    rng = np.random.default_rng(0)
    s = 3
    pairs = [_kron_pair(f"im{i}", rng.integers(0, 256, (20 + i, 17, 3), dtype=np.uint8), s) for i in range(3)]
    ds = PatchDataset(pairs, patch_size=12, scale=s, seed=7)
    for key in [(0, i) for i in range(20)]:
        lr, hr = ds[key]
        assert lr.shape == (3, 4, 4) and hr.shape == (3, 12, 12)
        # HR is LR with every pixel repeated s x s: any aligned crop + flip/rot90 keeps that exactly
        assert torch.equal(hr, lr.repeat_interleave(s, 1).repeat_interleave(s, 2))
        assert torch.equal(ds[key][0], lr)  # a pure function of (seed, epoch, index)
    assert not torch.equal(ds[(0, 0)][0], ds[(1, 0)][0])  # a new epoch draws new crops
    ranks = [list(EpochSampler(8, r, 2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 4 and not set(ranks[0]) & set(ranks[1])
    sampler = EpochSampler(8)
    sampler.set_epoch(5)
    assert {e for e, _ in sampler} == {5}


def _half_flat_pair(s: int) -> Pair:
    """A 40x40 LR image: left half one grey level, right half random texture."""
    lr = np.full((40, 40, 3), 120, np.uint8)
    lr[:, 20:] = np.random.default_rng(1).integers(0, 256, (40, 20, 3), dtype=np.uint8)
    return _kron_pair("half", lr, s)


def test_detail_crops_skip_flat_patches_and_stay_deterministic():
    s, keys = 2, [(0, i) for i in range(60)]
    pair = _half_flat_pair(s)
    plain = PatchDataset([pair], patch_size=8, scale=s, seed=3, augment=False)
    picky = PatchDataset([pair], patch_size=8, scale=s, seed=3, augment=False, min_detail=5.0, detail_tries=16)
    flat = lambda lr: bool((lr == lr[:, :1, :1]).all())  # noqa: E731
    # Uniform crops of a half-flat image are often entirely flat; the detail threshold redraws them.
    assert sum(flat(plain[k][0]) for k in keys) > 10
    assert sum(flat(picky[k][0]) for k in keys) == 0
    for k in keys[:10]:
        lr, hr = picky[k]
        assert torch.equal(picky[k][0], lr)  # still a pure function of (seed, epoch, index)
        assert torch.equal(hr, lr.repeat_interleave(s, 1).repeat_interleave(s, 2))  # and aligned
    # min_detail 0 draws exactly the crops it drew before the option existed (same RNG calls).
    off = PatchDataset([pair], patch_size=8, scale=s, seed=3, augment=False, min_detail=0.0, detail_tries=16)
    assert all(torch.equal(off[k][0], plain[k][0]) for k in keys)


def test_detail_crops_fall_back_to_the_most_detailed_candidate():
    # Nothing reaches the threshold: the crop is still drawn (never an endless loop), the most
    # detailed of the candidates.
    pair = _half_flat_pair(2)
    ds = PatchDataset([pair], patch_size=8, scale=2, seed=0, augment=False, min_detail=1e6, detail_tries=8)
    lr = ds[(0, 0)][0]
    assert lr.shape == (3, 4, 4) and not bool((lr == lr[:, :1, :1]).all())


def test_detail_crop_options_are_checked():
    pair = _half_flat_pair(2)
    for bad in ({"min_detail": -1.0}, {"min_detail": float("nan")}, {"detail_tries": 0}, {"detail_tries": 1.5}):
        with pytest.raises(ValueError, match=f"datamodule.{next(iter(bad))}"):
            PatchDataset([pair], patch_size=8, scale=2, seed=0, **bad)
