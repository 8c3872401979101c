"""Plain PyTorch backend: one process, or DistributedDataParallel under torchrun (nccl or gloo)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dist_train.backends.base import NETS, TrainBackend
from dist_train.checkpoint import CheckpointError, load_file, torch_save_atomic
from dist_train.optim import build_optimizer

STATE_FILE = "networks.pt"
_NET_KEYS = {"module", "optimizer", "scaler"}


class DDPBackend(TrainBackend):
    """Each network wrapped in DDP when there are several ranks, with its own optimizer and scaler."""

    def wrap(self, generator: nn.Module, discriminator: nn.Module) -> None:
        self.modules = {"g": generator.to(self.env.device), "d": discriminator.to(self.env.device)}
        self.wrapped = {}
        for net, module in self.modules.items():
            if self.env.distributed:
                device_ids = [self.env.device.index] if self.env.device.type == "cuda" else None
                self.wrapped[net] = DistributedDataParallel(module, device_ids=device_ids)
            else:
                self.wrapped[net] = module
        self.optimizers = {net: build_optimizer(self.modules[net].parameters(), self.cfg, net) for net in NETS}
        self.scalers = {net: self.precision.make_scaler() for net in NETS}

    def forward(self, net: str, x: torch.Tensor) -> torch.Tensor:
        return self.wrapped[net](x)

    def module(self, net: str) -> nn.Module:
        return self.modules[net]

    def backward(self, net: str, loss: torch.Tensor) -> None:
        scaler = self.scalers[net]
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, net: str) -> None:
        optimizer, scaler = self.optimizers[net], self.scalers[net]
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.modules[net].parameters(), self.cfg.optim.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def param_groups(self, net: str) -> list[dict]:
        return self.optimizers[net].param_groups

    def save(self, folder: Path) -> None:
        if not self.env.is_main:
            return  # DDP keeps every rank's state identical: rank 0 writes it
        state = {}
        for net in NETS:
            state[net] = {
                "module": self.modules[net].state_dict(),
                "optimizer": self.optimizers[net].state_dict(),
                "scaler": self.scalers[net].state_dict() if self.scalers[net] is not None else None,
            }
        torch_save_atomic(state, folder / STATE_FILE)  # through a file object: a refused write names its errno

    def load(self, folder: Path) -> None:
        if not (folder / STATE_FILE).is_file():
            raise CheckpointError(f"{folder / STATE_FILE}: missing; this checkpoint was not written by "
                                  "dist.backend=ddp (resume with the backend that wrote it)")
        state = load_file(folder / STATE_FILE, set(NETS), map_location=self.env.device)
        for net in NETS:
            part = state[net]
            if set(part) != _NET_KEYS:
                missing, unknown = sorted(_NET_KEYS - set(part)), sorted(set(part) - _NET_KEYS)
                raise CheckpointError(f"{folder / STATE_FILE}: network {net!r} has missing keys {missing}, "
                                      f"unknown keys {unknown}")
            self.modules[net].load_state_dict(part["module"])
            self.optimizers[net].load_state_dict(part["optimizer"])
            if (part["scaler"] is None) != (self.scalers[net] is None):
                raise CheckpointError(f"{folder / STATE_FILE}: saved with another train.precision; resume with the same one")
            if self.scalers[net] is not None:
                self.scalers[net].load_state_dict(part["scaler"])
