"""CompactSR: an efficient generator for CPUs, every convolution at low resolution.

Learnt from the efficient-SR designs (ESPCN, FSRCNN, Real-ESRGAN's SRVGGNetCompact, RLFN): features
stay at the input's resolution, and one convolution to ``scale**2`` channels followed by a single
pixel shuffle makes the output, so upsampling costs one layer instead of SRResNet's convolutions at
2x and 4x resolution (which are most of SRResNet's MACs). The body is residual blocks of two 3x3
convolutions (an identity skip every two layers trains faster than a plain stack at this depth).

The network predicts a residual over the bicubic upsample with a zero-initialised last layer, so
the untrained generator is exactly bicubic interpolation. The residual is added in float32 even
under bf16 autocast: the base is the image itself, and bf16 rounds bright pixels to about one gray
level, the size of the detail the network adds.

The head sees the input centred on mid-gray (``x - 0.5``), as EDSR subtracts its data mean. On raw
[0, 1] intensities a head channel's pre-activation is mostly its weights' sum times the image's
brightness, so at initialisation most PReLUs sit on one side of their kink (7 of 32 head channels
straddle it on a real radiograph, 15 of 32 centred) and the network starts out nearly linear: it
then plateaus at the gain of a linear sharpening filter before its nonlinear jump, which came about
500 steps sooner with the centred input (benchmarks/RESULTS.md, the default model section).

Only convolutions, PReLU, pixel shuffle and the ATen bicubic op: TorchScript, .pt2 and the C++
example need nothing new.
"""
from __future__ import annotations

import torch
from torch import nn

from dist_train.degradation import bicubic_upsample


class CompactBlock(nn.Module):
    """conv-PReLU-conv-PReLU plus identity."""

    def __init__(self, features: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features),
                                  nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CompactSR(nn.Module):
    """Head conv, ``blocks`` residual blocks, a conv to ``scale**2`` channels, one pixel shuffle."""

    def __init__(self, scale: int = 4, features: int = 32, blocks: int = 6):
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        self.scale = scale
        self.global_residual = True
        self.head = nn.Sequential(nn.Conv2d(1, features, 3, padding=1), nn.PReLU(features))
        self.trunk = nn.Sequential(*[CompactBlock(features) for _ in range(blocks)])
        self.tail = nn.Conv2d(features, scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x - 0.5)
        features = features + self.trunk(features)
        residual = self.shuffle(self.tail(features))
        return residual.float() + bicubic_upsample(x.float(), self.scale)
