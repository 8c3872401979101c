"""The one degradation (docs/contracts.md §3): antialiased bicubic downsampling, clamped.

Training, validation, benchmarks and the demo all call these two functions, so a change of the
degradation happens here or nowhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bicubic_downsample(batch: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downsampling of an ``N x C x H x W`` float batch in [0, 1], clamped,
    not rounded: the operator itself, for back-projection and for images of more than 8 bits.

    H and W must be multiples of ``scale`` so that HR and LR align pixel for pixel.
    """
    height, width = batch.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"HR size {height}x{width} is not a multiple of the scale {scale}")
    lr = F.interpolate(batch.float(), size=(height // scale, width // scale), mode="bicubic",
                       antialias=True, align_corners=False)
    return lr.clamp_(0.0, 1.0)


def to_8bit_grid(batch: torch.Tensor) -> torch.Tensor:
    """``round(255 * x) / 255`` in place: the values an 8-bit image can hold."""
    return batch.mul_(255.0).round_().div_(255.0)


def crop_to_scale(image, scale: int, crop_px: int = 0):
    """The HR an image gives for ``scale``: its centred ``crop_px`` square (0, or more than the
    image: all of it), trimmed to a multiple of ``scale`` on each side, centred.

    Centred, like validation (``dist_train.data.samples.val_box``), so the app, the quality
    bench, the export parity check and validation score the same pixels of an image. Works on
    numpy arrays and tensors (the last two axes), and returns a view.
    """
    height, width = (min(crop_px or n, n) // scale * scale for n in image.shape[-2:])
    top, left = (image.shape[-2] - height) // 2, (image.shape[-1] - width) // 2
    return image[..., top:top + height, left:left + width]


def downsample(hr_batch: torch.Tensor, scale: int) -> torch.Tensor:
    """The degradation: LR = the 8-bit rounding of ``bicubic_downsample(hr_batch, scale)``."""
    return to_8bit_grid(bicubic_downsample(hr_batch, scale))


def bicubic_upsample(lr_batch: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic baseline: ``N x C x h x w`` -> ``N x C x (scale*h) x (scale*w)``, not clamped.

    Not clamped because the generator adds its residual to it before its own final clamp. The
    ATen op is called directly, which is what ``F.interpolate(mode="bicubic")`` runs: scripting
    ``F.interpolate`` would copy its whole body into the exported TorchScript file, and in torch
    2.14 that body calls ``_upsample_lanczos2d_aa``, which torch 2.11 (the GPU machines') lacks, so
    a file exported with 2.14 would not load there.
    """
    height, width = lr_batch.shape[-2], lr_batch.shape[-1]
    return torch.ops.aten.upsample_bicubic2d(lr_batch, [height * scale, width * scale], False)
