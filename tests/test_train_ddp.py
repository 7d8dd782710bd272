"""DDP on the CPU: `trainer.strategy=ddp trainer.devices=2` through the real command line, and the
data pipeline's guarantees that make it (and resume) correct."""
from __future__ import annotations

import csv
import json

import numpy as np
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
