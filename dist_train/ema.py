"""Exponential moving average of the generator: the weights that get validated and exported."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Shadow copy of a module updated as ``ema = d * ema + (1 - d) * param``.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so that a short run
    is not dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_param, param in zip(self.module.parameters(), model.parameters()):
            ema_param.lerp_(param.detach().to(ema_param.dtype), 1.0 - decay)
        for ema_buffer, buffer in zip(self.module.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Weights and update count; the decay stays the configured one (it may change on resume)."""
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
