"""What a batch is for the map-style backends (``folder`` and ``torch``), over any image source.

An ``ImageSource`` is the one thing the backends differ in: their items (file paths, shard
sample references) and how one item is decoded, sized and named. Sampling, padding, patches per
image and augmentation follow ``dist_train.data.sampling``; LR is made with
``dist_train.degradation.downsample`` (the reference degradation) on each whole image and cut at
the HR patch's place (``samples.augment_pair``), so a training group of batches is a pure
function of its position ``(epoch, group)`` and a resumed run needs no replay.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from dist_train.config import Config
from dist_train.data import sampling
from dist_train.data.cache import DecodedImages
from dist_train.data.positioned import PositionedTrainLoader
from dist_train.data.samples import augment_pair, training_pair, val_crop
from dist_train.degradation import downsample


@dataclass(frozen=True)
class ImageSource:
    """Items with how to decode one (to uint8 ``H x W``), read its ``(H, W)`` without decoding
    (for the decoded cache's size check) and name it. The functions must be module-level, so that
    DataLoader workers can pickle the source."""

    items: list[Any]
    decode: Callable[[Any], np.ndarray]
    name: Callable[[Any], str]
    shape: Callable[[Any], tuple[int, int]]

    def __len__(self) -> int:
        return len(self.items)

    def image(self, index: int) -> np.ndarray:
        return self.decode(self.items[index])

    def key(self, index: int) -> str:
        return self.name(self.items[index])

    def image_shape(self, index: int) -> tuple[int, int]:
        return self.shape(self.items[index])

    def pair(self, index: int, scale: int, patch_px: int, patches: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``samples.training_pair`` of item ``index`` for ``patches`` patches, decoded now."""
        return training_pair(self.image(index), scale, patch_px, patches)


def lr_hr_batch(hr_images: list[np.ndarray], scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Equally sized uint8 HR images -> (LR, HR) float batches ``N x 1 x h x w`` in [0, 1]."""
    hr = torch.from_numpy(np.stack(hr_images)).unsqueeze(1).float().div_(255.0)
    return downsample(hr, scale), hr


class PositionedBatches(Dataset):
    """Item ``(epoch, group)``: that group's ``patches_per_image`` batches of this rank, stacked in
    batch order, as ``(lr_u8, hr_u8, keys)`` (``sampling``: each image of the group decoded and
    downsampled once, cut into ``patches_per_image`` HR/LR patch pairs, the group's patches
    shuffled together)."""

    def __init__(self, source, cfg: Config, rank: int, world_size: int, shuffle: bool = True):
        self._source, self._cfg = source, cfg
        self._rank, self._world_size, self._shuffle = rank, world_size, shuffle

    def __len__(self) -> int:  # groups; the sampler, not the length, drives iteration
        return sampling.batches_per_epoch(len(self._source), self._world_size, self._cfg.data.batch_size)

    def __getitem__(self, position: tuple[int, int]):
        epoch, group = position
        data, seed, k = self._cfg.data, self._cfg.train.seed, self._cfg.data.patches_per_image
        indices = sampling.batch_indices(len(self._source), self._rank, self._world_size, epoch, group, seed,
                                         data.batch_size, self._shuffle)
        augments = sampling.group_augments(seed, self._rank, epoch, group, data.batch_size, k)
        order = sampling.group_patch_order(seed, self._rank, epoch, group, data.batch_size, k, self._shuffle)
        scale = self._cfg.model.scale
        pairs = [self._source.pair(i, scale, data.patch_px, k) for i in indices]
        hr = np.empty((len(order), 1, data.patch_px, data.patch_px), dtype=np.uint8)
        lr = np.empty((len(order), 1, data.patch_px // scale, data.patch_px // scale), dtype=np.uint8)
        for slot, p in enumerate(order):
            augment_pair(*pairs[p // k], augments[p], data.patch_px, scale, hr[slot, 0], lr[slot, 0])
        keys = [self._source.key(indices[p // k]) for p in order]
        return torch.from_numpy(lr), torch.from_numpy(hr), keys


def positioned_train_loader(source, cfg: Config, rank: int, world_size: int,
                            device: torch.device, backend: str, shuffle: bool = True) -> PositionedTrainLoader:
    """Endless, resumable training batches of this rank from ``source`` (an ``ImageSource``, held
    in memory first when ``data.cache=decoded``)."""
    if cfg.data.cache == "decoded":
        source = DecodedImages(source, cfg.data.cache_max_mb, cfg.data.workers, cfg.model.scale)
    dataset = PositionedBatches(source, cfg, rank, world_size, shuffle)
    return PositionedTrainLoader(dataset, len(dataset), cfg.data.workers, device, backend, world_size,
                                 cfg.data.batch_size, cfg.data.patches_per_image)


class ValBatches:
    """This rank's validation pairs: its contiguous part of the source, no augmentation.

    Whole images come one per batch (sizes may differ); centre crops in batches of
    ``data.batch_size``. Decoded in the calling process: validation is short and infrequent.
    """

    def __init__(self, source: ImageSource, cfg: Config, rank: int, world_size: int, device: torch.device):
        self._source, self._cfg, self._device = source, cfg, device
        self._indices = sampling.val_indices(len(source), rank, world_size, cfg.data.val_max_images)
        self._batch_size = cfg.data.batch_size if cfg.data.val_crop_px else 1
        self.keys = [source.key(i) for i in self._indices]

    def __len__(self) -> int:
        return -(-len(self._indices) // self._batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data, scale = self._cfg.data, self._cfg.model.scale
        for start in range(0, len(self._indices), self._batch_size):
            chunk = self._indices[start:start + self._batch_size]
            hr_images = [val_crop(self._source.image(i), data.val_crop_px, scale) for i in chunk]
            lr, hr = lr_hr_batch(hr_images, scale)
            yield lr.to(self._device), hr.to(self._device)
