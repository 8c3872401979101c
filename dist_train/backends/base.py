"""The interface every training backend offers the GAN step and the trainer.

A backend owns how the two networks are wrapped (plain, DDP, DeepSpeed engines), how a loss is
back-propagated and an optimizer stepped, and how network and optimizer state is saved. The GAN
step and the training loop only ever talk to this interface.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn

from dist_train.config import Config
from dist_train.distributed import DistEnv
from dist_train.precision import Precision

NETS = ("g", "d")


class TrainBackend(ABC):
    """Wrap, forward, backward, step, save, load for the generator ``g`` and discriminator ``d``."""

    def __init__(self, cfg: Config, env: DistEnv, precision: Precision):
        self.cfg = cfg
        self.env = env
        self.precision = precision

    @abstractmethod
    def wrap(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """Take ownership of both networks: move, wrap and build their optimizers."""

    @abstractmethod
    def forward(self, net: str, x: torch.Tensor) -> torch.Tensor:
        """Forward through the wrapped network (the path whose gradients get synchronised)."""

    @abstractmethod
    def module(self, net: str) -> nn.Module:
        """The bare network, e.g. D called inside the G step with D frozen."""

    @abstractmethod
    def backward(self, net: str, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` for network ``net`` (scaled when fp16)."""

    @abstractmethod
    def step(self, net: str) -> None:
        """Clip, optimizer step, scheduler step and zero the gradients of ``net``."""

    @abstractmethod
    def learning_rate(self, net: str) -> float:
        """The current learning rate of ``net``."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write network, optimizer, scheduler and scaler state into ``folder`` (every rank calls)."""

    @abstractmethod
    def load(self, folder: Path) -> None:
        """Restore what ``save`` wrote (every rank calls)."""


def build_backend(cfg: Config, env: DistEnv, precision: Precision) -> TrainBackend:
    """The backend named by ``dist.backend``."""
    if cfg.dist.backend == "deepspeed":
        from dist_train.backends.deepspeed_backend import DeepSpeedBackend
        return DeepSpeedBackend(cfg, env, precision)
    from dist_train.backends.ddp_backend import DDPBackend
    return DDPBackend(cfg, env, precision)
