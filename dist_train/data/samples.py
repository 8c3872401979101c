"""Per-sample image operations of the PyTorch path, the reference for what DALI's graph does.

Decoding, the augmentation of ``sampling.Augment`` and the validation crop, on numpy arrays.
``dali_graph`` builds the same operations inside a DALI pipeline; the tests hold the two equal.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from dist_train.data.sampling import Augment, crop_anchor


def decode_gray8(png: bytes) -> np.ndarray:
    """PNG bytes -> ``H x W`` uint8.

    The shard contract promises 8-bit grayscale; anything else is converted the right way rather
    than PIL's way: 16-bit gray is *scaled* to 8 bits (PIL's ``convert("L")`` clips it, turning
    most of a 16-bit X-ray white), colour goes through ``convert("L")`` (ITU-R 601 luma, as DALI's
    GRAY decoding).
    """
    with Image.open(io.BytesIO(png)) as image:
        if image.mode == "L":
            return np.asarray(image, dtype=np.uint8)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            wide = np.asarray(image, dtype=np.int64)
            return np.clip(np.rint(wide * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.asarray(image.convert("L"), dtype=np.uint8)


def augment_patch(image: np.ndarray, augment: Augment, patch_px: int, out: np.ndarray | None = None) -> np.ndarray:
    """The training patch: crop chosen by ``augment``, then transpose, then flips; written into
    ``out`` (``patch_px x patch_px`` uint8, e.g. a slot of the batch) when given, else a new array."""
    height, width = image.shape
    top = crop_anchor(augment.crop_y, height, patch_px)
    left = crop_anchor(augment.crop_x, width, patch_px)
    patch = image[top:top + patch_px, left:left + patch_px]
    if augment.transpose:
        patch = patch.T
    if augment.flip_h:
        patch = patch[:, ::-1]
    if augment.flip_v:
        patch = patch[::-1, :]
    if out is None:
        return np.ascontiguousarray(patch)
    out[...] = patch
    return out


def val_box(height: int, width: int, crop_px: int, scale: int) -> tuple[int, int, int, int]:
    """``(top, left, crop_h, crop_w)`` of a validation image: a centred ``crop_px`` square, or
    with ``crop_px == 0`` the whole image trimmed (centred) to a multiple of ``scale``."""
    if crop_px:
        if min(height, width) < crop_px:
            raise ValueError(f"validation image {height}x{width} is smaller than "
                             f"data.val_crop_px={crop_px}; lower it or set it to 0")
        crop_h = crop_w = crop_px
    else:
        crop_h, crop_w = height // scale * scale, width // scale * scale
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def val_crop(image: np.ndarray, crop_px: int, scale: int) -> np.ndarray:
    """The validation HR image of ``val_box``."""
    top, left, crop_h, crop_w = val_box(*image.shape, crop_px, scale)
    return np.ascontiguousarray(image[top:top + crop_h, left:left + crop_w])
