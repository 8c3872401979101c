"""Helpers of the loader tests (no tests here): shard sets made the project's one way, configs."""
from __future__ import annotations

from pathlib import Path

from data_prep.shard import shard_dataset
from data_prep.synth import make_synthetic
from dist_train.config import Config, load_config


def build_shard_set(root: Path, n_images: int = 30, size_px: int = 96) -> Path:
    """Synthetic phantoms sharded by data_prep (4 samples per shard): ``root/shards``."""
    make_synthetic(root / "source", n_images, seed=0, size_px=size_px)
    shard_dataset(root / "source", root / "shards", seed=0, val_fraction=0.2, test_fraction=0.1,
                  samples_per_shard=4, workers=1, progress=False)
    return root / "shards"


def tiny_config(shards: Path, backend: str, *extra: str, **data) -> Config:
    """A loader-test config: 32 px patches, batches of 4, one worker; ``data.*`` overrides as
    keyword arguments, other ``key=value`` overrides as positional ones."""
    overrides = [f"data.backend={backend}", f"data.shards={shards}", "data.patch_px=32",
                 "data.batch_size=4", "data.workers=1", *extra]
    overrides += [f"data.{key}={value}" for key, value in data.items()]
    return load_config(None, overrides)
