"""What a generator costs: multiply-accumulates per input, counted by torch's own FLOP counter."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

BUDGET_INPUT_PX = 256  # the figure reported everywhere: one 256 x 256 LR input -> 1024 x 1024


@torch.no_grad()
def gmac_per_input(generator: nn.Module, input_px: int = BUDGET_INPUT_PX) -> float:
    """GMAC of one forward pass on a ``1 x 1 x input_px x input_px`` input (FLOPs / 2)."""
    parameter = next(generator.parameters())
    x = torch.zeros(1, 1, input_px, input_px, device=parameter.device, dtype=parameter.dtype)
    with FlopCounterMode(display=False) as counter:
        generator(x)
    return counter.get_total_flops() / 2e9


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
