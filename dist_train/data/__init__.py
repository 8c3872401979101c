"""Training and validation data for the trainer, by ``data.backend``.

Every backend offers the same two things, so the training loop never changes with the backend:

* ``build_train_loader(...)`` -> an object with ``next_batch() -> (lr_batch, hr_batch)``
  (float32 ``N x 1 x h x w`` and ``N x 1 x H x W`` in [0, 1] on the device; epochs roll over
  internally), ``state_dict()`` / ``load_state_dict()`` for the position of the next batch, and
  ``close()``.
* ``build_val_loader(...)`` -> a re-iterable of (lr, hr) pairs: this rank's disjoint part of the
  validation split, no augmentation; the trainer builds it once and iterates it at every validation.
"""
from __future__ import annotations

import importlib

import torch

from dist_train.config import Config


# data.backend -> (module, its train-loader builder, its validation builder); imported on use so
# that a machine without DALI can still train with the other backends.
_BACKENDS = {
    "folder": ("dist_train.data.folder", "build_folder_train_loader", "build_folder_val_loader"),
    "torch": ("dist_train.data.shards_torch", "build_torch_train_loader", "build_torch_val_loader"),
    "dali": ("dist_train.data.shards_dali", "DaliTrainLoader", "DaliValLoader"),
}


def _builder(backend: str, which: int):
    module_name, *builders = _BACKENDS[backend]
    return getattr(importlib.import_module(module_name), builders[which])


def build_train_loader(cfg: Config, rank: int, world_size: int, device: torch.device):
    """The endless, resumable training batches of this rank."""
    return _builder(cfg.data.backend, 0)(cfg, rank, world_size, device)


def build_val_loader(cfg: Config, rank: int, world_size: int, device: torch.device):
    """This rank's validation (lr, hr) pairs."""
    return _builder(cfg.data.backend, 1)(cfg, rank, world_size, device)
