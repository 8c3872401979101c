"""The one degradation (../shared/CONTRACTS.md §3): antialiased bicubic downsampling, clamped.

Training, validation, benchmarks and the demo all call these two functions, so a change of the
degradation happens here or nowhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def downsample(hr_batch: torch.Tensor, scale: int) -> torch.Tensor:
    """LR = antialiased bicubic downsampling of an ``N x C x H x W`` float batch in [0, 1].

    H and W must be multiples of ``scale`` so that HR and LR align pixel for pixel.
    """
    height, width = hr_batch.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"HR size {height}x{width} is not a multiple of the scale {scale}")
    lr = F.interpolate(hr_batch.float(), size=(height // scale, width // scale), mode="bicubic",
                       antialias=True, align_corners=False)
    return lr.clamp_(0.0, 1.0)


def bicubic_upsample(lr_batch: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: ``N x C x h x w`` -> ``N x C x (scale*h) x (scale*w)``, not clamped.

    Not clamped because the generator adds its residual to it before its own final clamp.
    """
    height, width = lr_batch.shape[-2], lr_batch.shape[-1]
    return F.interpolate(lr_batch, size=[height * scale, width * scale], mode="bicubic",
                         align_corners=False)
