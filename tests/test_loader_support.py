"""Helpers of the loader tests (no tests here): shard sets made the project's one way, configs."""
from __future__ import annotations

from pathlib import Path

import torch

from data_prep.shard import shard_dataset
from data_prep.synth import make_synthetic
from dist_train.config import Config, load_config
from dist_train.degradation import downsample

ONE_GRAY = 1 / 255


def build_shard_set(root: Path, n_images: int = 30, size_px: int = 96) -> Path:
    """Synthetic phantoms sharded by data_prep (4 samples per shard): ``root/shards``."""
    make_synthetic(root / "source", n_images, seed=0, size_px=size_px)
    shard_dataset(root / "source", root / "shards", seed=0, val_fraction=0.2, test_fraction=0.1,
                  samples_per_shard=4, workers=1, progress=False)
    return root / "shards"


def tiny_config(shards: Path, backend: str, *extra: str, **data) -> Config:
    """A loader-test config: 32 px patches, batches of 4, one worker, one patch per image (the
    tests of several patches per image say so); ``data.*`` overrides as keyword arguments, other
    ``key=value`` overrides as positional ones."""
    overrides = [f"data.backend={backend}", f"data.shards={shards}", "data.patch_px=32",
                 "data.batch_size=4", "data.workers=1", "data.patches_per_image=1", *extra]
    overrides += [f"data.{key}={value}" for key, value in data.items()]
    return load_config(None, overrides)


def assert_same_lr(lr: torch.Tensor, reference: torch.Tensor) -> None:
    """Two LR batches on the 8-bit grid (docs/contracts.md §3) made by different code: equal, except where
    an LR value lies within float error (~1e-4 gray) of a rounding boundary, so that the two
    round apart by one gray level; such pixels are rare."""
    assert lr.shape == reference.shape
    assert (lr * 255 - torch.round(lr * 255)).abs().max() < 1e-3  # on the 8-bit grid
    diff = (lr - reference).abs()
    assert diff.max() <= ONE_GRAY + 1e-6
    assert (diff > 1e-6).float().mean() <= 0.01


def assert_lr_is_degradation(lr: torch.Tensor, hr: torch.Tensor, scale: int) -> None:
    """LR is the whole image's LR cut where the HR patch lies (docs/contracts.md §3): two LR pixels
    in from the patch's edges, where the kernel does not reach outside the patch, it equals the
    reference degradation of the HR patch itself, on the 8-bit grid."""
    assert lr.shape[-1] > 4 and lr.shape[-2] > 4, "too small a patch to have an inside"
    inside = (..., slice(2, -2), slice(2, -2))
    assert_same_lr(lr[inside], (torch.round(downsample(hr, scale) * 255) / 255)[inside])
