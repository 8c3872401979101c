"""Backend ``folder``: training straight from a folder of PNG/DICOM images, no shards needed.

Images are listed recursively and sorted by name; the last ``data.val_count`` are held out for
validation (a patient-disjoint split is the job of ``cxr-sr prep shard``). Sampling, padding and
augmentation follow ``dist_train.data.sampling``, so a batch is a pure function of its position
(epoch, batch) and a resumed run continues with exactly the batch it would have seen.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from data_prep.image_io import DICOM_SUFFIXES, read_gray8
from dist_train.config import Config
from dist_train.data import sampling
from dist_train.data.positioned import PositionedTrainLoader
from dist_train.data.samples import augment_patch, val_crop
from dist_train.data.shards_torch import lr_hr_batch

IMAGE_SUFFIXES = (".png", *DICOM_SUFFIXES)


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

    def __getitem__(self, position: tuple[int, int]):
        epoch, batch = position
        data, seed = self.cfg.data, self.cfg.train.seed
        indices = sampling.batch_indices(len(self.paths), self.rank, self.world_size, epoch, batch, seed,
                                         data.batch_size)
        augments = sampling.batch_augments(seed, self.rank, epoch, batch, data.batch_size)
        patches = [augment_patch(read_gray8(self.paths[i])[0], aug, data.patch_px)
                   for i, aug in zip(indices, augments)]
        lr, hr = lr_hr_batch(patches, self.cfg.model.scale)
        return lr, hr, [self.paths[i].stem for i in indices]


def build_folder_train_loader(cfg: Config, rank: int, world_size: int, device: torch.device) -> PositionedTrainLoader:
    """Endless training batches from a folder, with a resumable position."""
    paths, _ = split_paths(cfg)
    dataset = _PositionedBatches(paths, cfg, rank, world_size)
    return PositionedTrainLoader(dataset, len(dataset), cfg.data.workers, device, "folder", world_size,
                                 cfg.data.batch_size)


class FolderValLoader:
    """This rank's validation images one at a time (sizes may differ), as (lr, hr) pairs.

    The folder is listed once; every iteration decodes the same images again.
    """

    def __init__(self, cfg: Config, rank: int, world_size: int, device: torch.device):
        _, paths = split_paths(cfg)
        self.paths = [paths[i] for i in sampling.val_indices(len(paths), rank, world_size, cfg.data.val_max_images)]
        self.cfg, self.device = cfg, device

    def __iter__(self):
        for path in self.paths:
            hr = val_crop(read_gray8(path)[0], self.cfg.data.val_crop_px, self.cfg.model.scale)
            lr, hr_tensor = lr_hr_batch([hr], self.cfg.model.scale)
            yield lr.to(self.device), hr_tensor.to(self.device)
