"""LightningDataModule over the prepare stage's pairs (`<root>/<split>/{hr,lr}/<name>.png`).

The data are small, so every image is decoded once into memory (uint8) and each training item
is a random aligned HR/LR patch crop plus a random flip/rot90 — microseconds of NumPy, which
keeps both CPU cores on the model. With `min_detail` > 0 a crop whose LR patch is nearly flat is
drawn again (up to `detail_tries` candidates): photos are mostly sky, walls and out-of-focus
background, where bicubic is already exact and a step teaches nothing (bench/patch_detail.py: of
uniform 128-pixel crops of the 40 full-profile photos, half have a bicubic PSNR above 50 dB; the
74% that min_detail 4 redraws hold 7% of the error bicubic leaves). A crop is a pure function
of (seed, epoch, item index), not of a worker's RNG state, so the sequence of batches is
identical whatever the number of worker processes, across DDP ranks, and after a resume from a
checkpoint taken at an epoch boundary.

An "epoch" here is the training interval between two validations (`steps_per_epoch` batches
per process); the pipeline checkpoints at every epoch end, which is what makes resume exact.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gensr.data.pairs import Pair, read_split
from gensr.data.resize import bicubic_upscale
from gensr.errors import UserError
from gensr.io import rgb_to_luma, to_uint8
from gensr.metrics import psnr_y, ssim_y


def load_pairs(split_dir: Path, scale: int, channels: int) -> list[Pair]:
    """Every pair of one split, kept as uint8 (a quarter of float32's memory)."""
    return [Pair(p.name, to_uint8(p.lr), to_uint8(p.hr)) for p in read_split(split_dir, scale, channels)]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWxC uint8 -> CxHxW float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """CxHxW float tensor -> HxWxC float32 numpy in [0, 1] (what gensr.metrics takes)."""
    return t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def augment(hr: np.ndarray, lr: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One of the 8 dihedral transforms (k in 0..7), applied to both images alike."""
    if k & 4:
        hr, lr = hr[:, ::-1], lr[:, ::-1]
    return np.rot90(hr, k & 3), np.rot90(lr, k & 3)


def detail(lr: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels of an LR patch's luma, in 8-bit grey
    levels: about 0 on flat sky, 1-2 on smooth gradients, 5-20 on textures and edges."""
    y = lr.astype(np.float32)
    y = rgb_to_luma(y) if y.shape[-1] == 3 else y[..., 0]
    return 0.5 * float(np.abs(np.diff(y, axis=0)).mean() + np.abs(np.diff(y, axis=1)).mean())


class PatchDataset(Dataset):
    """Items are `(epoch, index)` pairs; the crop is drawn from an RNG seeded by (seed, epoch, index).

    `min_detail` (grey levels, `detail`; 0 = every crop is kept): a candidate crop (image and place)
    under it is drawn again, up to `detail_tries` candidates, after which the most detailed one is
    taken. So the batches follow the photos' own distribution of patches that hold detail."""

    def __init__(self, pairs: list[Pair], patch_size: int, scale: int, seed: int, augment: bool = True,
                 min_detail: float = 0.0, detail_tries: int = 8):
        if patch_size % scale:
            raise ValueError(f"datamodule.patch_size={patch_size} must be a multiple of the scale {scale}")
        if not min_detail >= 0:  # also NaN
            raise ValueError(f"datamodule.min_detail must be >= 0 grey levels, got {min_detail!r}")
        if int(detail_tries) != detail_tries or detail_tries < 1:
            raise ValueError(f"datamodule.detail_tries must be an integer >= 1, got {detail_tries!r}")
        for p in pairs:
            if min(p.hr.shape[:2]) < patch_size:
                raise UserError(
                    f"training image {p.name} is {p.hr.shape[1]}x{p.hr.shape[0]} HR pixels, smaller "
                    f"than datamodule.patch_size={patch_size}: lower it, or rerun the prepare stage (its "
                    "data.min_side, the patch size by default, drops such images)"
                )
        self.pairs, self.patch, self.scale, self.seed, self.augment = pairs, patch_size, scale, seed, augment
        self.min_detail, self.tries = float(min_detail), int(detail_tries) if min_detail > 0 else 1
        # Bigger images hold more distinct patches: sample images in proportion to their area.
        areas = np.array([p.lr.shape[0] * p.lr.shape[1] for p in pairs], dtype=np.float64)
        self.cum = np.cumsum(areas / areas.sum())

    def __len__(self) -> int:  # the sampler decides how many items an epoch has
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        best, best_detail = None, -1.0
        for _ in range(self.tries):
            crop = self._crop(rng)
            d = detail(crop[0]) if self.tries > 1 else 0.0
            if d > best_detail:
                best, best_detail = crop, d
            if d >= self.min_detail:
                break
        lr, hr = best
        if self.augment:
            hr, lr = augment(hr, lr, int(rng.integers(0, 8)))
        return to_tensor(lr), to_tensor(hr)

    def _crop(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """An aligned (LR, HR) patch at a random place of a random image (by area)."""
        pair = self.pairs[min(int(np.searchsorted(self.cum, rng.random())), len(self.pairs) - 1)]
        p, s = self.patch // self.scale, self.scale
        h, w = pair.lr.shape[:2]
        y, x = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        return pair.lr[y : y + p, x : x + p], pair.hr[y * s : (y + p) * s, x * s : (x + p) * s]


class EpochSampler(Sampler):
    """Yields `(epoch, index)` for this process's share of an epoch: indices rank, rank+world, ...

    Lightning calls `set_epoch` before each epoch (also after a resume), so the main process tells
    (persistent) workers which epoch it is through the indices themselves.
    """

    def __init__(self, items_per_epoch: int, rank: int = 0, world: int = 1):
        self.items, self.rank, self.world, self.epoch = items_per_epoch, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(range(self.rank, self.items, self.world))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in range(self.rank, self.items, self.world))


def centre_crop(pair: Pair, max_side: int, scale: int) -> Pair:
    """Centre crop to at most max_side HR pixels per side, aligned to the LR grid."""
    h, w = pair.lr.shape[:2]
    ch, cw = min(h, max_side // scale), min(w, max_side // scale)
    y, x = (h - ch) // 2, (w - cw) // 2
    s = scale
    return Pair(pair.name, pair.lr[y : y + ch, x : x + cw], pair.hr[y * s : (y + ch) * s, x * s : (x + cw) * s])


class ValDataset(Dataset):
    def __init__(self, pairs: list[Pair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return to_tensor(self.pairs[i].lr), to_tensor(self.pairs[i].hr), i


class SRDataModule(L.LightningDataModule):
    """Training patches and fixed validation images of `<root>/{train,val}`.

    `steps_per_epoch` batches of `batch_size` per process make one epoch; validation images are
    the whole val split, centre-cropped to `val_max_side`, evaluated by every process (they are
    few), so validation metrics need no cross-process gathering.
    """

    def __init__(
        self,
        root: str | Path,
        scale: int,
        channels: int = 3,
        patch_size: int = 96,
        batch_size: int = 16,
        num_workers: int = 1,
        val_max_side: int = 256,
        steps_per_epoch: int = 100,
        seed: int = 0,
        augment: bool = True,
        persistent_workers: bool = True,
        min_detail: float = 0.0,
        detail_tries: int = 8,
    ):
        super().__init__()
        self.root, self.scale, self.channels = Path(root), int(scale), int(channels)
        self.patch_size, self.batch_size, self.num_workers = int(patch_size), int(batch_size), int(num_workers)
        self.val_max_side, self.steps_per_epoch, self.seed = int(val_max_side), int(steps_per_epoch), int(seed)
        self.augment, self.persistent_workers = augment, persistent_workers
        self.min_detail, self.detail_tries = float(min_detail), int(detail_tries)
        self.train_pairs: list[Pair] = []
        self.val_pairs: list[Pair] = []
        self.bicubic: list[np.ndarray] = []
        self.bicubic_psnr: list[float] = []
        self.bicubic_ssim: list[float] = []

    def setup(self, stage: str | None = None) -> None:
        if self.val_pairs:  # loaded already (setup runs once per fit/validate call)
            return
        if self.val_max_side < self.scale:
            raise ValueError(f"datamodule.val_max_side={self.val_max_side} is smaller than the scale")
        self.train_pairs = load_pairs(self.root / "train", self.scale, self.channels)
        self.val_pairs = [
            centre_crop(p, self.val_max_side, self.scale)
            for p in load_pairs(self.root / "val", self.scale, self.channels)
        ]
        # The bicubic baseline on exactly the validation crops, computed once.
        self.bicubic = [bicubic_upscale(p.lr, self.scale) for p in self.val_pairs]
        self.bicubic_psnr = [psnr_y(b, p.hr, self.scale) for b, p in zip(self.bicubic, self.val_pairs)]
        self.bicubic_ssim = [ssim_y(b, p.hr, self.scale) for b, p in zip(self.bicubic, self.val_pairs)]

    @property
    def bicubic_psnr_y(self) -> float:
        return float(np.mean(self.bicubic_psnr))

    @property
    def bicubic_ssim_y(self) -> float:
        return float(np.mean(self.bicubic_ssim))

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        dataset = PatchDataset(self.train_pairs, self.patch_size, self.scale, self.seed, self.augment,
                               self.min_detail, self.detail_tries)
        sampler = EpochSampler(self.steps_per_epoch * self.batch_size * world, rank, world)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        # Validation images differ in size: one per batch, in the main process (no worker start-up).
        return DataLoader(ValDataset(self.val_pairs), batch_size=1, shuffle=False, num_workers=0)
