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
from dist_train.optim import learning_rate
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
        """Clip, optimizer step and zero the gradients of ``net`` (no schedule: see ``set_step``)."""

    @abstractmethod
    def param_groups(self, net: str) -> list[dict]:
        """The parameter groups of ``net``'s optimizer, the place its learning rate is read from."""

    def set_step(self, global_step: int) -> None:
        """Set both networks' learning rates for training step ``global_step``, before it runs.

        The trainer calls this every step, whether or not an update is then applied, so the
        schedule follows the global step in every backend; no engine's scheduler is involved.
        """
        for net in NETS:
            rate = learning_rate(self.cfg, net, global_step)
            for group in self.param_groups(net):
                group["lr"] = rate

    def learning_rate(self, net: str) -> float:
        """The learning rate of ``net``'s latest (or next) update."""
        return self.param_groups(net)[0]["lr"]

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write network, optimizer and scaler state into ``folder`` (every rank calls)."""

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
