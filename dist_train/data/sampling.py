"""Which samples a rank sees in an epoch, and the random augmentation of each: pure functions.

One plan serves every backend (folder, torch, dali) so that their epochs mean the same thing:

* **Sharding** follows DALI's reader (``shard_id``/``num_shards`` with ``stick_to_shard`` and a
  shard that moves on every epoch): the split's samples ``0..n-1`` (in storage order) are cut into
  ``world_size`` contiguous chunks ``[n*c//k, n*(c+1)//k)``, and rank ``r`` reads chunk
  ``(r + epoch) % k`` in epoch ``epoch``. The chunks are disjoint and cover the split, so every
  epoch is exactly-once across ranks, and each rank meets a different part of the data every epoch.
* **Order inside the chunk** is a permutation seeded by ``(seed, rank, epoch)`` (torch and folder
  backends); DALI shuffles the same chunk with its own shuffle buffer seeded the same way, so its
  order differs but its set of samples does not.
* **Padding**: every rank runs ``batches_per_epoch`` batches (the largest chunk rounded up to whole
  batches) so that DDP ranks stay in lockstep; the tail is filled by repeating the rank's own chunk,
  so padding never lends a rank another rank's sample.
* **Patches per image**: the epoch's image order is cut into *groups* of ``batch_size`` images
  (what a batch was with one patch per image). Each image of a group is decoded once and gives
  ``k`` patches (``data.patches_per_image``), each with its own augmentation; the group's
  ``batch_size * k`` patches are shuffled together and cut into ``k`` batches, so a batch mixes
  patches of up to ``batch_size`` images. An epoch is therefore ``k`` times as many batches, and
  every image of the split is still seen once per epoch, as ``k`` patches. With ``k = 1`` the
  batches are exactly those of one patch per image.
* **Augmentation** (random crop on the LR grid, flips, transpose: the 8 symmetries of the square, i.e. all flips
  and 90-degree rotations) is drawn from a generator seeded by ``(seed, rank, epoch, group)``, as
  is the mixing of the group's patches, so a batch is a pure function of its position: the basis
  of exact mid-epoch resume.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

# Distinguishes the seed streams so the order and the augmentation never share random numbers.
_ORDER_STREAM = 0
_AUGMENT_STREAM = 1
_DALI_STREAM = 2
_MIX_STREAM = 3


def chunk_bounds(n_samples: int, chunk: int, n_chunks: int) -> tuple[int, int]:
    """``[start, stop)`` of contiguous chunk ``chunk`` of ``n_chunks``: DALI's shard boundaries."""
    if not 0 <= chunk < n_chunks:
        raise ValueError(f"chunk {chunk} is outside 0..{n_chunks - 1}")
    return n_samples * chunk // n_chunks, n_samples * (chunk + 1) // n_chunks


def rank_chunk(rank: int, world_size: int, epoch: int) -> int:
    """The chunk rank ``rank`` reads in ``epoch`` (DALI moves each shard on by one per epoch)."""
    return (rank + epoch) % world_size


def batches_per_epoch(n_samples: int, world_size: int, batch_size: int) -> int:
    """Batches every rank runs per epoch: the largest chunk, ``ceil(n/k)``, in whole batches."""
    if n_samples < world_size:
        raise ValueError(f"{n_samples} samples cannot feed {world_size} ranks; "
                         "give every rank at least one sample")
    return math.ceil(math.ceil(n_samples / world_size) / batch_size)


def _seed(*parts: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(p) for p in parts])


def pipeline_seed(seed: int, rank: int, epoch: int) -> int:
    """A 31-bit seed for DALI's pipeline (reader shuffle) of ``rank`` in ``epoch``."""
    return int(_seed(seed, _DALI_STREAM, rank, epoch).generate_state(1)[0] & 0x7FFFFFFF)


@functools.lru_cache(maxsize=4)  # batch_indices asks for the same epoch's plan once per batch
def epoch_indices(n_samples: int, rank: int, world_size: int, epoch: int, seed: int,
                  batch_size: int, shuffle: bool = True) -> np.ndarray:
    """The sample indices rank ``rank`` reads in ``epoch``, padded to whole batches, in order."""
    start, stop = chunk_bounds(n_samples, rank_chunk(rank, world_size, epoch), world_size)
    chunk = np.arange(start, stop, dtype=np.int64)
    if shuffle:
        chunk = np.random.default_rng(_seed(seed, _ORDER_STREAM, rank, epoch)).permutation(chunk)
    total = batches_per_epoch(n_samples, world_size, batch_size) * batch_size
    order = np.resize(chunk, total)  # np.resize repeats the chunk cyclically to fill the tail
    order.flags.writeable = False  # cached: shared by every caller
    return order


def batch_indices(n_samples: int, rank: int, world_size: int, epoch: int, batch: int, seed: int,
                  batch_size: int, shuffle: bool = True) -> np.ndarray:
    """The ``batch_size`` sample indices of batch ``batch`` of ``epoch`` for ``rank``."""
    order = epoch_indices(n_samples, rank, world_size, epoch, seed, batch_size, shuffle)
    return order[batch * batch_size:(batch + 1) * batch_size]


@dataclass(frozen=True)
class Augment:
    """Random augmentation of one training sample, independent of the image size.

    ``crop_x``/``crop_y`` in [0, 1) choose the patch: the anchor is ``floor(u * (size - patch + 1))``
    (``crop_anchor``) in LR pixels, uniform over all positions of the LR patch in the image's LR
    (the HR patch lies ``scale`` times further, ``samples.augment_pair``), computed in float32 so
    that DALI's in-graph arithmetic gives the same integer. ``transpose`` then ``flip_h``/``flip_v``
    give the 8 symmetries of the square (all flips and 90-degree rotations).
    """

    crop_x: float
    crop_y: float
    transpose: bool
    flip_h: bool
    flip_v: bool


def batch_augments(seed: int, rank: int, epoch: int, batch: int, batch_size: int) -> list[Augment]:
    """The augmentation of each slot of batch ``batch`` of ``epoch`` for ``rank``."""
    rng = np.random.default_rng(_seed(seed, _AUGMENT_STREAM, rank, epoch, batch))
    crops = rng.random((batch_size, 2), dtype=np.float32)
    flags = rng.integers(0, 2, size=(batch_size, 3)).astype(bool)
    return [Augment(float(c[0]), float(c[1]), bool(f[0]), bool(f[1]), bool(f[2]))
            for c, f in zip(crops, flags)]


def group_augments(seed: int, rank: int, epoch: int, group: int, batch_size: int,
                   patches_per_image: int) -> list[Augment]:
    """The augmentation of each patch of image group ``group``: patch ``p`` is crop
    ``p % patches_per_image`` of the group's image ``p // patches_per_image``. With one patch per
    image this is ``batch_augments`` of the batch the group was."""
    return batch_augments(seed, rank, epoch, group, batch_size * patches_per_image)


def group_patch_order(seed: int, rank: int, epoch: int, group: int, batch_size: int,
                      patches_per_image: int, shuffle: bool = True) -> np.ndarray:
    """Which patch of the group fills each slot of its ``patches_per_image`` batches, in order:
    slot ``s`` (batch ``s // batch_size`` of the group) holds patch ``order[s]``.

    Shuffled, so that a batch is not ``batch_size`` crops of a few radiographs; unshuffled (and with
    one patch per image, where the image order is already shuffled) patches stay in order.
    """
    n_patches = batch_size * patches_per_image
    if not shuffle or patches_per_image == 1:
        return np.arange(n_patches, dtype=np.int64)
    return np.random.default_rng(_seed(seed, _MIX_STREAM, rank, epoch, group)).permutation(n_patches)


def crop_anchor(u: float, size_px: int, patch_px: int) -> int:
    """Top/left edge of a ``patch_px`` crop chosen by ``u`` in [0, 1) from ``size_px`` pixels."""
    if size_px < patch_px:
        raise ValueError(f"image side {size_px} px is smaller than the patch {patch_px} px")
    product = np.float32(u) * np.float32(size_px - patch_px + 1)  # float32 like the DALI graph
    return min(int(np.floor(product)), size_px - patch_px)


def val_indices(n_samples: int, rank: int, world_size: int, max_images: int = 0) -> np.ndarray:
    """Validation samples of ``rank``, in order: its contiguous part of the first ``max_images``
    samples of the split (all of them when ``max_images`` is 0).

    The evaluated set is the same for every world size, so validation figures stay comparable
    when the number of processes changes. Uncapped, rank ``r``'s part is DALI's shard ``r``. No
    padding: the trainer sums over ranks.
    """
    total = min(max_images, n_samples) if max_images > 0 else n_samples
    start, stop = chunk_bounds(total, rank, world_size)
    return np.arange(start, stop, dtype=np.int64)
