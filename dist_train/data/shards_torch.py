"""Backend ``torch``: the shard set read by PyTorch workers, DALI's twin and the tests' reference.

It follows ``sampling`` exactly (rotating contiguous chunks, a seeded permutation inside the
chunk, padding by cycling the chunk) and makes LR with ``dist_train.degradation.downsample``, the
reference itself. Reading is random access into the tars through the DALI index files, so a
batch is a pure function of its position and mid-epoch resume needs no replay. (A streaming
``webdataset`` pipeline cannot draw a permutation of the whole chunk; a map-style dataset can.)
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from dist_train.config import Config
from dist_train.data import sampling
from dist_train.data.positioned import PositionedTrainLoader
from dist_train.data.samples import augment_patch, decode_gray8, val_crop
from dist_train.data.shardset import SampleRef, SplitShards, load_split
from dist_train.degradation import downsample


def read_png(ref: SampleRef) -> bytes:
    """The PNG bytes of one sample, read straight from its tar."""
    with open(ref.tar, "rb") as tar:
        tar.seek(ref.png_offset)
        return tar.read(ref.png_size)


def lr_hr_batch(hr_images: list[np.ndarray], scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Equally sized uint8 HR images -> (LR, HR) float batches ``N x 1 x h x w`` in [0, 1]."""
    hr = torch.from_numpy(np.stack(hr_images)).unsqueeze(1).float().div_(255.0)
    return downsample(hr, scale), hr


class _ShardBatches(Dataset):
    """Item ``(epoch, batch)``: that batch of this rank as ``(lr, hr, keys)``."""

    def __init__(self, refs: list[SampleRef], cfg: Config, rank: int, world_size: int,
                 shuffle: bool):
        self._refs, self._cfg = refs, cfg
        self._rank, self._world_size, self._shuffle = rank, world_size, shuffle

    def __len__(self) -> int:  # the sampler, not the length, drives iteration
        return sampling.batches_per_epoch(len(self._refs), self._world_size,
                                          self._cfg.data.batch_size)

    def __getitem__(self, position: tuple[int, int]):
        epoch, batch = position
        data, seed = self._cfg.data, self._cfg.train.seed
        indices = sampling.batch_indices(len(self._refs), self._rank, self._world_size, epoch,
                                         batch, seed, data.batch_size, self._shuffle)
        augments = sampling.batch_augments(seed, self._rank, epoch, batch, data.batch_size)
        refs = [self._refs[i] for i in indices]
        patches = [augment_patch(decode_gray8(read_png(ref)), aug, data.patch_px)
                   for ref, aug in zip(refs, augments)]
        lr, hr = lr_hr_batch(patches, self._cfg.model.scale)
        return lr, hr, [ref.key for ref in refs]


def build_torch_train_loader(cfg: Config, rank: int, world_size: int, device: torch.device,
                             split: SplitShards | None = None,
                             shuffle: bool = True) -> PositionedTrainLoader:
    """Endless, resumable training batches of this rank from the train shards."""
    split = split if split is not None else load_split(cfg.data.shards, "train")
    dataset = _ShardBatches(split.sample_refs(), cfg, rank, world_size, shuffle)
    return PositionedTrainLoader(dataset, len(dataset), cfg.data.workers, device, "torch",
                                 world_size, cfg.data.batch_size)


class TorchValLoader:
    """This rank's validation pairs: its contiguous part of the val split, no augmentation.

    Whole images come one per batch (sizes may differ); centre crops in batches of
    ``data.batch_size``. Decoded in the calling process: validation is short and infrequent.
    """

    def __init__(self, cfg: Config, rank: int, world_size: int, device: torch.device,
                 split: SplitShards | None = None):
        split = split if split is not None else load_split(cfg.data.shards, "val")
        refs = split.sample_refs()
        indices = sampling.val_indices(len(refs), rank, world_size, cfg.data.val_max_images)
        self._refs = [refs[i] for i in indices]
        self._cfg, self._device = cfg, device
        self._batch_size = cfg.data.batch_size if cfg.data.val_crop_px else 1
        self.keys = [ref.key for ref in self._refs]

    def __len__(self) -> int:
        return -(-len(self._refs) // self._batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data, scale = self._cfg.data, self._cfg.model.scale
        for start in range(0, len(self._refs), self._batch_size):
            chunk = self._refs[start:start + self._batch_size]
            hr_images = [val_crop(decode_gray8(read_png(ref)), data.val_crop_px, scale)
                         for ref in chunk]
            lr, hr = lr_hr_batch(hr_images, scale)
            yield lr.to(self._device), hr.to(self._device)
