"""SRGAN/VGG-style discriminator: one logit per patch or per 16 x 16 px cell, for any patch size.

The original SRGAN flattens a fixed 6x6 map into a dense layer, which ties it to 96 px patches;
global average pooling before the classifier keeps its receptive field but accepts any size.

A radiograph and its 4x reconstruction differ by one or two gray levels of fine detail on a
patch whose contrast spans a hundred, so a D fed raw [0, 1] intensities stays at chance. The
fixed ``DetailInput`` stem hands the first convolution what differs: the patch standardised to
its own contrast and a high-pass of it in gray levels. Spectral normalisation (as in
Real-ESRGAN's discriminator) bounds D without batch statistics, which leak the real/fake label
when HR and SR share a batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

GRAY_LEVELS = 255.0
# HR patches of NIH radiographs have a Laplacian high-pass of about 1.5 gray levels (std), their
# bicubic reconstructions about 0.2-0.4: two levels per unit puts real detail near 1.
HIGH_PASS_LEVELS_PER_UNIT = 2.0
# Flat patches (collimator borders, burnt-out lung) have no contrast to standardise by: below
# one gray level of spread the patch is only centred.
STD_FLOOR = 1.0 / GRAY_LEVELS


class DetailInput(nn.Module):
    """Fixed, parameter-free stem: 8-bit levels, then [standardised patch, high-pass] channels.

    ``quantize`` rounds the input to the 8-bit grid HR PNGs live on (straight-through, so G still
    gets a gradient): without it D can tell SR from HR by its off-grid values alone, a shortcut
    that says nothing about detail. The stem runs in fp32 because bf16 cannot hold one gray level
    near white (its step there is 1/256 of full scale).
    """

    def __init__(self, standardise: bool = True, high_pass: bool = True, quantize: bool = True):
        super().__init__()
        self.standardise, self.high_pass, self.quantize = standardise, high_pass, quantize
        laplacian = torch.tensor([[0.0, -0.25, 0.0], [-0.25, 1.0, -0.25], [0.0, -0.25, 0.0]])
        self.register_buffer("laplacian", laplacian.view(1, 1, 3, 3), persistent=False)

    @property
    def out_channels(self) -> int:
        return 1 + int(self.high_pass)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.autocast(image.device.type, enabled=False):
            image = image.float()
            if self.quantize:
                levels = (image.clamp(0.0, 1.0) * GRAY_LEVELS).round() / GRAY_LEVELS
                image = image + (levels - image).detach()
            if self.standardise:
                mean = image.mean(dim=(-2, -1), keepdim=True)
                std = image.std(dim=(-2, -1), keepdim=True).clamp_min(STD_FLOOR)
                channels = [(image - mean) / std]
            else:
                channels = [image]
            if self.high_pass:
                padded = F.pad(image, (1, 1, 1, 1), mode="replicate")
                detail = F.conv2d(padded, self.laplacian.float()) * (GRAY_LEVELS / HIGH_PASS_LEVELS_PER_UNIT)
                channels.append(detail)
            return torch.cat(channels, dim=1)


def _block(in_ch: int, out_ch: int, stride: int, batchnorm: bool, spectral: bool) -> nn.Sequential:
    conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not batchnorm)
    layers: list[nn.Module] = [spectral_norm(conv) if spectral else conv]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


DISCRIMINATOR_HEADS = ("pooled", "patch")


class PatchDiscriminator(nn.Module):
    """The stem, eight 3x3 convolutions (features x1, x2, x4, x8, stride 2 every second), a 2-layer head.

    ``head="pooled"`` averages the last map into one logit per patch (SRGAN with global pooling);
    ``head="patch"`` scores every location of it (PatchGAN, pix2pix): one logit per 16 x 16 px cell
    with a receptive field of 63 px, each cell's evidence kept apart. On the CPU GAN recipe the
    two heads lose to the generator alike when G's learning rate is too high (D's accuracy
    swings to 0.1-0.3 within 20 steps; benchmarks/RESULTS.md): what keeps D ahead is G's rate,
    not the head, so the recipes keep the cheaper pooled head.

    ``forward_with_features`` also returns every block's activation, for the feature-matching
    term (pix2pixHD) of the generator.
    """

    def __init__(self, features: int = 64, batchnorm: bool = False, spectral: bool = True,
                 standardise: bool = True, high_pass: bool = True, quantize: bool = True,
                 head: str = "pooled"):
        super().__init__()
        if head not in DISCRIMINATOR_HEADS:
            raise ValueError(f"discriminator head {head!r}: use one of {', '.join(DISCRIMINATOR_HEADS)}")
        self.stem = DetailInput(standardise, high_pass, quantize)
        widths = [features, features, features * 2, features * 2, features * 4, features * 4,
                  features * 8, features * 8]
        # the first block never has BatchNorm: normalising the stem's output would undo it
        blocks = [_block(self.stem.out_channels, features, 1, batchnorm=False, spectral=spectral)]
        for index in range(1, len(widths)):
            blocks.append(_block(widths[index - 1], widths[index], stride=2 if index % 2 else 1,
                                 batchnorm=batchnorm, spectral=spectral))
        self.features = nn.Sequential(*blocks)
        if head == "pooled":
            hidden, logit = nn.Linear(features * 8, features * 16), nn.Linear(features * 16, 1)
            reduce: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        else:  # the same two layers as 1x1 convolutions, applied at every cell
            hidden, logit = nn.Conv2d(features * 8, features * 16, 1), nn.Conv2d(features * 16, 1, 1)
            reduce = []
        if spectral:
            hidden, logit = spectral_norm(hidden), spectral_norm(logit)
        self.classifier = nn.Sequential(*reduce, hidden, nn.LeakyReLU(0.2, inplace=True), logit)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (``N x 1``, or ``N x 1 x H/16 x W/16`` for the patch head) and the activation of
        every convolution block, shallow to deep."""
        activations, hidden = [], self.stem(x)
        for block in self.features:
            hidden = block(hidden)
            activations.append(hidden)
        return self.classifier(hidden), activations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, ``N x 1`` or ``N x 1 x H/16 x W/16`` (no sigmoid: the losses use BCE with logits)."""
        return self.classifier(self.features(self.stem(x)))
