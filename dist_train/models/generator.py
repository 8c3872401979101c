"""SRResNet generator for one-channel images (Ledig et al. 2017; MSRResNet/EDSR without BatchNorm).

Input ``N x 1 x h x w`` in [0, 1]; output ``N x 1 x (s*h) x (s*w)``, not clamped (the exported
model clamps, training losses see the raw output). With ``global_residual`` the network predicts a
residual over the bicubic upsample and its last layer starts at zero, so the untrained generator
is exactly bicubic interpolation.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from dist_train.degradation import bicubic_upsample


def _conv(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)


class ResidualBlock(nn.Module):
    """conv-[BN]-PReLU-conv-[BN] plus identity."""

    def __init__(self, features: int, batchnorm: bool):
        super().__init__()
        layers: list[nn.Module] = [_conv(features, features)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(features))
        layers.append(nn.PReLU(features))
        layers.append(_conv(features, features))
        if batchnorm:
            layers.append(nn.BatchNorm2d(features))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """SRResNet for scale 2, 4 or 8 (one pixel-shuffle x2 stage per factor of two)."""

    def __init__(self, scale: int = 4, features: int = 64, blocks: int = 16, batchnorm: bool = False,
                 global_residual: bool = True):
        super().__init__()
        if scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        self.scale = scale
        self.global_residual = global_residual
        self.head = nn.Sequential(_conv(1, features, 9), nn.PReLU(features))
        trunk: list[nn.Module] = [ResidualBlock(features, batchnorm) for _ in range(blocks)]
        trunk.append(_conv(features, features))
        if batchnorm:
            trunk.append(nn.BatchNorm2d(features))
        self.trunk = nn.Sequential(*trunk)
        upsample: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            upsample += [_conv(features, features * 4), nn.PixelShuffle(2), nn.PReLU(features)]
        self.upsample = nn.Sequential(*upsample)
        self.tail = _conv(features, 1, 9)
        if global_residual:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = features + self.trunk(features)
        out = self.tail(self.upsample(features))
        if self.global_residual:
            # in float32: under bf16 autocast a bf16 base would round bright pixels to about one
            # gray level, the size of the detail the residual adds
            out = out.float() + bicubic_upsample(x.float(), self.scale)
        return out
