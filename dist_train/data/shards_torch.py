"""Backend ``torch``: the shard set read by PyTorch workers, DALI's twin and the tests' reference.

It follows ``sampling`` exactly (rotating contiguous chunks, a seeded permutation inside the
chunk, padding by cycling the chunk) and makes LR with ``dist_train.degradation.downsample``, the
reference itself. Reading is random access into the tars through the DALI index files, so a
batch is a pure function of its position and mid-epoch resume needs no replay. (A streaming
``webdataset`` pipeline cannot draw a permutation of the whole chunk; a map-style dataset can.)
"""
from __future__ import annotations

import struct

import numpy as np
import torch

from dist_train.config import Config
from dist_train.data.batches import ImageSource, ValBatches, positioned_train_loader
from dist_train.data.positioned import PositionedTrainLoader
from dist_train.data.samples import decode_gray8
from dist_train.data.shardset import SampleRef, ShardSetError, SplitShards, load_split


def read_png(ref: SampleRef) -> bytes:
    """The PNG bytes of one sample, read straight from its tar."""
    with open(ref.tar, "rb") as tar:
        tar.seek(ref.png_offset)
        return tar.read(ref.png_size)


def decode_sample(ref: SampleRef) -> np.ndarray:
    """One shard sample as uint8 ``H x W``."""
    return decode_gray8(read_png(ref))


def sample_key(ref: SampleRef) -> str:
    return ref.key


def sample_shape(ref: SampleRef) -> tuple[int, int]:
    """``(H, W)`` of one sample from its PNG header (IHDR), without decoding."""
    with open(ref.tar, "rb") as tar:
        tar.seek(ref.png_offset)
        header = tar.read(24)
    if len(header) < 24 or header[12:16] != b"IHDR":
        raise ShardSetError(f"{ref.tar}: sample {ref.key} is not a PNG (no IHDR header)")
    width, height = struct.unpack(">II", header[16:24])
    return height, width


def shard_images(split: SplitShards) -> ImageSource:
    """The samples of one split as an image source (``dist_train.data.batches``)."""
    return ImageSource(split.sample_refs(), decode_sample, sample_key, sample_shape)


def build_torch_train_loader(cfg: Config, rank: int, world_size: int, device: torch.device,
                             split: SplitShards | None = None,
                             shuffle: bool = True) -> PositionedTrainLoader:
    """Endless, resumable training batches of this rank from the train shards."""
    split = split if split is not None else load_split(cfg.data.shards, "train")
    return positioned_train_loader(shard_images(split), cfg, rank, world_size, device, "torch",
                                   shuffle)


def build_torch_val_loader(cfg: Config, rank: int, world_size: int, device: torch.device,
                           split: SplitShards | None = None) -> ValBatches:
    """This rank's validation pairs from the val shards (see ``ValBatches``)."""
    split = split if split is not None else load_split(cfg.data.shards, "val")
    return ValBatches(shard_images(split), cfg, rank, world_size, device)
