"""The module that gets exported: the generator followed by the clamp to [0, 1].

The generator itself returns unclamped values (training losses need them); the deployment
contract (docs/contracts.md §4) promises [0, 1], so the clamp lives in the exported graph.
"""
from __future__ import annotations

import torch
from torch import nn


class ClampedGenerator(nn.Module):
    """``generator(x).clamp(0, 1)``, with the scale kept as an attribute for loaders."""

    def __init__(self, generator: nn.Module, scale: int):
        super().__init__()
        self.generator = generator
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x).clamp(0.0, 1.0)


def infer_scale(generator: nn.Module) -> int:
    """The generator's scale from its ``scale`` attribute, or by running it on an 8 x 8 input."""
    scale = getattr(generator, "scale", None)
    if isinstance(scale, int):
        return scale
    with torch.no_grad():
        probe = torch.zeros(1, 1, 8, 8, dtype=next(generator.parameters()).dtype)
        return int(generator(probe).shape[-1] // 8)
