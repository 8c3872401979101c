"""The optional hard data-consistency step: make SR's bicubic downsample equal the LR input.

Iterative back-projection (Irani & Peleg 1991) with the project's own downsampling (unrounded, so
the correction is not stuck at half a gray level): the LR error
of the current SR is upsampled and added back, so the result keeps the model's detail but its
downsample converges to the input. Its effect is reported with the consistency figure of
docs/contracts.md §5 before and after.
"""
from __future__ import annotations

import torch

from dist_train.degradation import bicubic_downsample, bicubic_upsample

DEFAULT_ITERATIONS = 10


def enforce_consistency(sr_batch: torch.Tensor, lr_batch: torch.Tensor, scale: int,
                        iterations: int = DEFAULT_ITERATIONS) -> torch.Tensor:
    """Back-projects the LR residual ``iterations`` times; stays within [0, 1]."""
    sr = sr_batch.float()
    lr = lr_batch.float().to(sr.device)
    for _ in range(iterations):
        sr = (sr + bicubic_upsample(lr - bicubic_downsample(sr, scale), scale)).clamp_(0.0, 1.0)
    return sr
