"""Building blocks of the DALI pipelines: augmentation and the degradation, inside the graph.

These mirror ``samples`` (the HR/LR pair's crop, dihedral symmetry, validation box) and
``dist_train.degradation.downsample`` (antialiased bicubic, docs/contracts.md §3) operation for operation.

Why not ``fn.resize(interp_type=INTERP_CUBIC, antialias=True)``: its kernel matches PyTorch's
inside the image, but it extends the image at the border where PyTorch (like PIL) renormalises
the truncated kernel, so the outer two LR rows and columns differ by up to ~12 gray levels. The
degradation below is PyTorch's definition written as a normalised convolution: blur with the
stretched Keys cubic (a = -0.5) under zero padding, take every ``scale``-th pixel, divide by the
sum of the in-bounds weights. It agrees with the reference to ~1e-4 gray levels everywhere.
"""
from __future__ import annotations

import numpy as np
from nvidia.dali import fn, math as dmath, types
from nvidia.dali.data_node import DataNode


def antialias_bicubic_taps(scale: int) -> np.ndarray:
    """The ``4*scale`` 1-D weights of PyTorch's antialiased bicubic downsampling by ``scale``.

    Tap ``k`` sits ``k - 2*scale + 0.5`` HR pixels from the LR pixel's centre, which lies between
    HR pixels ``p - 1`` and ``p`` with ``p = scale*j + scale//2`` for an even ``scale``.
    """
    if scale % 2:
        raise ValueError(f"scale {scale} must be even (the LR centre must fall between HR pixels)")
    distance = np.abs((np.arange(4 * scale) - 2 * scale + 0.5) / scale)
    a = -0.5  # Keys' cubic as PIL and PyTorch's antialias path use it (not OpenCV's -0.75)
    weights = np.where(distance < 1, (a + 2) * distance**3 - (a + 3) * distance**2 + 1,
                       np.where(distance < 2, a * (distance**3 - 5 * distance**2 + 8 * distance - 4), 0.0))
    return weights.astype(np.float32)


def downsample(hr: DataNode, scale: int, device: str) -> DataNode:
    """``H x W x 1`` float HR in [0, 1] (any size, a multiple of ``scale``) -> ``H/scale x W/scale
    x 1`` LR, clamped and rounded to the 8-bit grid (docs/contracts.md §3).

    Each axis in turn: blur with the taps under zero padding, keep every ``scale``-th row (or
    column), so the second blur runs on a ``scale`` times smaller image. Then divide by the
    in-bounds weight, which is separable: the outer product of the same 1-D blurs of a column
    and a row of ones (broadcast), not a blur of a whole image of ones.
    """
    taps = antialias_bicubic_taps(scale)
    taps_y = types.Constant(taps.reshape(-1, 1), device=device)
    taps_x = types.Constant(taps.reshape(1, -1), device=device)

    # Nearest-neighbour resizing by 1/scale reads HR pixel scale*j + scale//2 for LR pixel j.
    def along(image: DataNode, taps_yx: DataNode, anchor: list[int], keep: np.ndarray) -> DataNode:
        image = fn.filter(image, taps_yx, border="constant", anchor=anchor, device=device)
        size_hw = image.shape(dtype=types.FLOAT)[0:2] * types.Constant(keep)
        return fn.resize(image, size=size_hw, interp_type=types.INTERP_NN, antialias=False, device=device)

    def along_y(image: DataNode) -> DataNode:
        return along(image, taps_y, [2 * scale, 0], np.array([1.0 / scale, 1.0], np.float32))

    def along_x(image: DataNode) -> DataNode:
        return along(image, taps_x, [0, 2 * scale], np.array([1.0, 1.0 / scale], np.float32))

    weight = along_y(hr[:, 0:1] * 0.0 + 1.0) * along_x(hr[0:1, :] * 0.0 + 1.0)
    return round_to_8bit(dmath.clamp(along_x(along_y(hr)) / weight, 0.0, 1.0))


def round_to_8bit(unit: DataNode) -> DataNode:
    """``round(255 x) / 255`` of values in [0, 1], as the reference degradation rounds (ties,
    which a blur practically never produces, go up here and to even there)."""
    return dmath.floor(unit * 255.0 + 0.5) / 255.0


def to_unit_float(image: DataNode) -> DataNode:
    """uint8 -> float32 in [0, 1]."""
    return fn.cast(image, dtype=types.FLOAT) / 255.0  # a division, bit-equal to the torch path


def _patch_anchor(size_hw: DataNode, crop_uv: DataNode, patch_px: int) -> DataNode:
    """``sampling.crop_anchor`` for (y, x) at once, in float32 like it."""
    return dmath.min(dmath.floor(crop_uv * (size_hw - (patch_px - 1))), size_hw - patch_px)


def random_pair(hr: DataNode, lr: DataNode, crop_uv: DataNode, patch_px: int, scale: int):
    """``samples.augment_pair``'s crop in the graph: a ``patch_px`` square of the trimmed HR image
    and the ``patch_px / scale`` square of its LR over the same area, both ``H x W x 1``.

    ``crop_uv`` is the float32 pair ``(crop_y, crop_x)`` in [0, 1) of ``sampling.Augment``; the
    anchor is chosen on the LR grid. The image is decoded whole once and cut several times
    (``data.patches_per_image``); decoding only a region would not help, since DALI's CPU PNG
    path inflates the whole image anyway.
    """
    lr_px = patch_px // scale
    anchor = _patch_anchor(lr.shape(dtype=types.FLOAT)[0:2], crop_uv, lr_px)

    def cut(image: DataNode, corner: DataNode, side: int) -> DataNode:
        return fn.slice(image, corner, [float(side), float(side)], axes=[0, 1], normalized_anchor=False,
                        normalized_shape=False, out_of_bounds_policy="error")
    return cut(hr, anchor * float(scale), patch_px), cut(lr, anchor, lr_px)


def dihedral(patch: DataNode, transpose: DataNode, flip_h: DataNode, flip_v: DataNode) -> DataNode:
    """Transpose, then flips: ``samples.augment_patch``'s order. Needs conditionals enabled."""
    if transpose:
        patch = fn.transpose(patch, perm=[1, 0, 2], output_layout="HWC")  # as the else branch
    return fn.flip(patch, horizontal=flip_h, vertical=flip_v)


def val_patch(image: DataNode, crop_px: int, scale: int) -> DataNode:
    """``samples.val_crop`` in the graph: centred ``crop_px`` square, or the image trimmed to a
    multiple of ``scale``."""
    size_hw = image.shape(dtype=types.FLOAT)[0:2]
    if crop_px:
        box = size_hw * 0.0 + float(crop_px)
    else:
        box = dmath.floor(size_hw * (1.0 / scale)) * float(scale)
    anchor = dmath.floor((size_hw - box) * 0.5)
    return fn.slice(image, anchor, box, axes=[0, 1], normalized_anchor=False,
                    normalized_shape=False, out_of_bounds_policy="error")


def to_chw(image: DataNode) -> DataNode:
    """``H x W x 1`` -> ``1 x H x W`` so that a batch is ``N x 1 x H x W``.

    With one channel the memory order is the same, so a reshape (no copy) does it.
    """
    return fn.reshape(image, src_dims=[2, 0, 1], layout="CHW")
