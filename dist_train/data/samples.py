"""Per-sample image operations of the PyTorch path, the reference for what DALI's graph does.

Decoding, the training pair (HR and its LR, per whole image), the augmentation of
``sampling.Augment`` and the validation crop, on numpy arrays.
``dali_graph`` builds the same operations inside a DALI pipeline; the tests hold the two equal.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from dist_train.data.sampling import Augment, crop_anchor
from dist_train.degradation import crop_to_scale, downsample


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


# LR pixels around a patch whose values the antialiased bicubic kernel reaches into (it spans 1.5
# LR pixels beyond a pixel's own block): the LR of the patch and this margin equals the whole
# image's LR on the patch, bit for bit.
CONTEXT_LR_PX = 2


def _lr_u8(hr: np.ndarray, scale: int) -> np.ndarray:
    """The degradation (docs/contracts.md §3) of uint8 ``hr`` as uint8."""
    unit = torch.from_numpy(hr.astype(np.float32))[None, None].div_(255.0)
    return downsample(unit, scale).mul_(255.0).round_().to(torch.uint8)[0, 0].numpy()


def image_lr(image: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The training pair of a whole decoded image: ``(hr, lr)``, HR the image trimmed (centred) to
    a multiple of ``scale`` (a view) and LR its degradation as uint8.

    Patches are cut from both at the same place (``augment_pair``), so a training LR patch is
    what a real low-resolution radiograph holds there: the whole image's LR, with no kernel
    renormalised at the patch's edges. Computed once per decoded image, not once per patch.
    """
    hr = crop_to_scale(image, scale)
    return hr, _lr_u8(hr, scale)


def training_pair(image: np.ndarray, scale: int, patch_px: int, patches: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``image_lr`` when ``patches`` patches would downsample more pixels than the whole image,
    else ``(hr, None)``: ``augment_pair`` then makes each patch's LR from the patch and its
    margin, the same values at less cost for few patches per image."""
    hr = crop_to_scale(image, scale)
    if patches * (patch_px + 2 * CONTEXT_LR_PX * scale) ** 2 >= hr.size:
        return image_lr(image, scale)
    return hr, None


def _lr_around(hr: np.ndarray, top: int, left: int, lr_px: int, scale: int) -> np.ndarray:
    """The whole image's LR at LR rows ``top..top+lr_px`` and columns ``left..left+lr_px``,
    made from that part of ``hr`` and a margin of ``CONTEXT_LR_PX`` (clipped at the image)."""
    lr_h, lr_w = hr.shape[0] // scale, hr.shape[1] // scale
    y0, x0 = max(0, top - CONTEXT_LR_PX), max(0, left - CONTEXT_LR_PX)
    y1, x1 = min(lr_h, top + lr_px + CONTEXT_LR_PX), min(lr_w, left + lr_px + CONTEXT_LR_PX)
    lr = _lr_u8(hr[y0 * scale:y1 * scale, x0 * scale:x1 * scale], scale)
    return lr[top - y0:top - y0 + lr_px, left - x0:left - x0 + lr_px]


def _symmetry(patch: np.ndarray, augment: Augment) -> np.ndarray:
    """Transpose, then flips: the dihedral part of ``augment`` (a view)."""
    if augment.transpose:
        patch = patch.T
    if augment.flip_h:
        patch = patch[:, ::-1]
    if augment.flip_v:
        patch = patch[::-1, :]
    return patch


def augment_pair(hr: np.ndarray, lr: np.ndarray | None, augment: Augment, patch_px: int, scale: int,
                 hr_out: np.ndarray, lr_out: np.ndarray) -> None:
    """One training patch of a ``training_pair``, written into ``hr_out`` (``patch_px`` square)
    and ``lr_out`` (``patch_px / scale`` square), e.g. slots of the batch.

    The crop is chosen on the LR grid (``crop_anchor`` over LR positions) and the HR crop lies
    ``scale`` times further, so the two cover the same area; then the same transpose and flips.
    The antialiased bicubic kernel is symmetric, so the LR of the transformed HR is exactly the
    transformed LR. With ``lr`` None the LR of just this patch is made (``_lr_around``).
    """
    lr_px = patch_px // scale
    top = crop_anchor(augment.crop_y, hr.shape[0] // scale, lr_px)
    left = crop_anchor(augment.crop_x, hr.shape[1] // scale, lr_px)
    if lr is None:
        lr_out[...] = _symmetry(_lr_around(hr, top, left, lr_px, scale), augment)
    else:
        lr_out[...] = _symmetry(lr[top:top + lr_px, left:left + lr_px], augment)
    top, left = top * scale, left * scale
    hr_out[...] = _symmetry(hr[top:top + patch_px, left:left + patch_px], augment)


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
