"""Backend ``folder``: training straight from a folder of PNG/DICOM images, no shards needed.

Images are listed recursively and sorted by name; the last ``data.val_count`` are held out for
validation (a patient-disjoint split is the job of ``cxr-sr prep shard``). Sampling, padding and
augmentation follow ``dist_train.data.sampling``, so a batch is a pure function of its position
(epoch, batch) and a resumed run continues with exactly the batch it would have seen.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data_prep.image_io import read_gray8
from dist_train.config import Config
from dist_train.data import sampling
from dist_train.data.samples import augment_patch, val_crop
from dist_train.degradation import downsample

IMAGE_SUFFIXES = (".png", ".dcm")


def lr_hr_pair(hr_images: list, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack equally sized uint8 HR images into ``N x 1 x H x W`` floats in [0, 1] and degrade them."""
    hr = torch.from_numpy(np.stack(hr_images)).unsqueeze(1).float().div_(255.0)
    return downsample(hr, scale), hr


def list_images(folder: Path) -> list[Path]:
    """Every PNG/DICOM under ``folder``, sorted by path."""
    if not folder.is_dir():
        raise FileNotFoundError(f"data.images: folder {folder} does not exist")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"data.images: no PNG or DICOM files under {folder}")
    return paths


def split_paths(cfg: Config) -> tuple[list[Path], list[Path]]:
    """(train, val) paths: the last ``val_count`` by name are validation."""
    paths = list_images(Path(cfg.data.images))
    held_out = min(cfg.data.val_count, len(paths) - 1)
    return paths[:len(paths) - held_out], paths[len(paths) - held_out:]


class _PositionedBatches(Dataset):
    """Item ``(epoch, batch)`` is that batch of this rank: decoded, augmented, degraded."""

    def __init__(self, paths: list[Path], cfg: Config, rank: int, world_size: int):
        self.paths, self.cfg, self.rank, self.world_size = paths, cfg, rank, world_size

    def __len__(self) -> int:  # the sampler, not the length, drives iteration
        return sampling.batches_per_epoch(len(self.paths), self.world_size, self.cfg.data.batch_size)

    def __getitem__(self, position: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, batch = position
        data, seed = self.cfg.data, self.cfg.train.seed
        indices = sampling.batch_indices(len(self.paths), self.rank, self.world_size, epoch, batch, seed,
                                         data.batch_size)
        augments = sampling.batch_augments(seed, self.rank, epoch, batch, data.batch_size)
        patches = [augment_patch(read_gray8(self.paths[i])[0], aug, data.patch_px)
                   for i, aug in zip(indices, augments)]
        return lr_hr_pair(patches, self.cfg.model.scale)


class _PositionsFrom(torch.utils.data.Sampler):
    """Every (epoch, batch) from a starting position onwards, forever."""

    def __init__(self, start: tuple[int, int], batches_per_epoch: int):
        self.start, self.batches_per_epoch = start, batches_per_epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, batch = self.start
        while True:
            yield epoch, batch
            batch += 1
            if batch == self.batches_per_epoch:
                epoch, batch = epoch + 1, 0


class FolderTrainLoader:
    """Endless training batches from a folder, with a resumable position."""

    def __init__(self, cfg: Config, rank: int, world_size: int, device: torch.device):
        paths, _ = split_paths(cfg)
        self.dataset = _PositionedBatches(paths, cfg, rank, world_size)
        self.batches_per_epoch = len(self.dataset)
        self.workers, self.device = cfg.data.workers, device
        self.epoch, self.batch = 0, 0
        self._iterator = None

    def _start(self) -> None:
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.workers,
                            sampler=_PositionsFrom((self.epoch, self.batch), self.batches_per_epoch),
                            prefetch_factor=2 if self.workers else None)
        self._iterator = iter(loader)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._iterator is None:
            self._start()
        lr, hr = next(self._iterator)
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"backend": "folder", "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.epoch, self.batch = state["epoch"], state["batch"]

    def close(self) -> None:
        self._iterator = None  # drops the DataLoader iterator and its workers


def folder_val_batches(cfg: Config, rank: int, world_size: int, device: torch.device):
    """This rank's validation images one at a time (sizes may differ), as (lr, hr) pairs."""
    _, paths = split_paths(cfg)
    for index in sampling.val_indices(len(paths), rank, world_size, cfg.data.val_max_images):
        hr = val_crop(read_gray8(paths[index])[0], cfg.data.val_crop_px, cfg.model.scale)
        lr, hr_tensor = lr_hr_pair([hr], cfg.model.scale)
        yield lr.to(device), hr_tensor.to(device)
