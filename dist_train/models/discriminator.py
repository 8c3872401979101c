"""SRGAN/VGG-style discriminator returning one logit per image, for any patch size.

The original SRGAN flattens a fixed 6x6 map into a dense layer, which ties it to 96 px patches;
global average pooling before the classifier keeps its receptive field but accepts any size.
"""
from __future__ import annotations

import torch
from torch import nn


def _block(in_ch: int, out_ch: int, stride: int, batchnorm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class PatchDiscriminator(nn.Module):
    """Eight 3x3 convolutions (features x1, x2, x4, x8, stride 2 every second) then a 2-layer head."""

    def __init__(self, features: int = 64, batchnorm: bool = False):
        super().__init__()
        widths = [features, features, features * 2, features * 2, features * 4, features * 4,
                  features * 8, features * 8]
        layers: list[nn.Module] = [nn.Conv2d(1, features, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for index in range(1, len(widths)):
            layers += _block(widths[index - 1], widths[index], stride=2 if index % 2 else 1,
                             batchnorm=batchnorm)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(features * 8, features * 16), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(features * 16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``N x 1`` (no sigmoid: the losses use BCE with logits)."""
        return self.classifier(self.features(x))
