"""Training and validation data for the trainer, by ``data.backend``.

Every backend offers the same two things, so the training loop never changes with the backend:

* ``build_train_loader(...)`` -> an object with ``next_batch() -> (lr_batch, hr_batch)``
  (float32 ``N x 1 x h x w`` and ``N x 1 x H x W`` in [0, 1] on the device; epochs roll over
  internally), ``state_dict()`` / ``load_state_dict()`` for the position of the next batch, and
  ``close()``.
* ``build_val_batches(...)`` -> an iterable of (lr, hr) pairs: this rank's disjoint part of the
  validation split, no augmentation.
"""
from __future__ import annotations

import torch

from dist_train.config import Config


def build_train_loader(cfg: Config, rank: int, world_size: int, device: torch.device):
    """The endless, resumable training batches of this rank."""
    if cfg.data.backend == "folder":
        from dist_train.data.folder import build_folder_train_loader
        return build_folder_train_loader(cfg, rank, world_size, device)
    if cfg.data.backend == "torch":
        from dist_train.data.shards_torch import build_torch_train_loader
        return build_torch_train_loader(cfg, rank, world_size, device)
    if cfg.data.backend == "dali":
        from dist_train.data.shards_dali import DaliTrainLoader
        return DaliTrainLoader(cfg, rank, world_size, device)
    raise NotImplementedError(f"data.backend={cfg.data.backend} is not available yet")


def build_val_loader(cfg: Config, rank: int, world_size: int, device: torch.device):
    """This rank's validation (lr, hr) pairs."""
    if cfg.data.backend == "folder":
        from dist_train.data.folder import folder_val_batches
        return folder_val_batches(cfg, rank, world_size, device)
    if cfg.data.backend == "torch":
        from dist_train.data.shards_torch import TorchValLoader
        return TorchValLoader(cfg, rank, world_size, device)
    if cfg.data.backend == "dali":
        from dist_train.data.shards_dali import DaliValLoader
        return DaliValLoader(cfg, rank, world_size, device)
    raise NotImplementedError(f"data.backend={cfg.data.backend} is not available yet")
