"""``data.cache=decoded``: a training split decoded once and held in memory, for sets that fit.

Inflating a 1024 px PNG is most of what a training patch costs on the CPU; a set that fits in
memory (the 312-image NIH sample is 312 MiB decoded) need not pay it every epoch. Each image's
LR (``samples.image_lr``, 1/16 of the image at scale 4) is made once here too, so a patch then
costs two crops. The images lie in shared-memory uint8 buffers, so DataLoader workers (forked or
spawned) and DALI's external source read the same pages instead of each holding a copy.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from dist_train.config import ConfigError
from dist_train.data.samples import image_lr
from dist_train.degradation import crop_to_scale

MIB = 2**20


class _Buffer:
    """Images of known shapes back to back in one shared-memory uint8 tensor."""

    def __init__(self, shapes: list[tuple[int, int]]):
        self.shapes = shapes
        sizes = np.array([height * width for height, width in shapes], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.pixels = torch.empty(int(self.offsets[-1]), dtype=torch.uint8).share_memory_()

    def view(self, index: int) -> np.ndarray:
        start, stop = self.offsets[index], self.offsets[index + 1]
        return self.pixels[start:stop].numpy().reshape(self.shapes[index])


def _read_only(view: np.ndarray) -> np.ndarray:
    view.flags.writeable = False
    return view


class DecodedImages:
    """An image source (``len``, ``image``, ``key``, ``image_shape``, ``pair``) whose images and
    their LR at ``scale`` are made once, here, in parallel threads (PNG inflation and the
    downsampling release the GIL).

    The size check uses the image headers, so a set over ``max_mb`` is refused before any
    decoding, with one line naming the field.
    """

    def __init__(self, source, max_mb: int, threads: int = 1, scale: int = 4):
        self._source, self.scale = source, scale
        shapes = [tuple(source.image_shape(i)) for i in range(len(source))]
        lr_shapes = [(height // scale, width // scale) for height, width in shapes]
        needed_mib = sum(h * w for h, w in shapes + lr_shapes) / MIB
        if needed_mib > max_mb:
            raise ConfigError(f"config field 'data.cache_max_mb': the {len(shapes)} decoded training images "
                              f"and their LR need {needed_mib:.0f} MiB, over the cap of {max_mb} MiB; raise "
                              "data.cache_max_mb or set data.cache=none")
        self._images, self._lrs = _Buffer(shapes), _Buffer(lr_shapes)
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for _ in pool.map(self._fill, range(len(shapes))):
                pass

    def _fill(self, index: int) -> None:
        image = self._source.image(index)
        if image.shape != self._images.shapes[index]:
            expected = self._images.shapes[index]
            raise ValueError(f"{self._source.key(index)}: decodes to {image.shape[0]}x{image.shape[1]}, "
                             f"its header says {expected[0]}x{expected[1]}")
        self._images.view(index)[...] = image
        self._lrs.view(index)[...] = image_lr(image, self.scale)[1]

    def __len__(self) -> int:
        return len(self._images.shapes)

    @property
    def nbytes(self) -> int:
        return int(self._images.offsets[-1] + self._lrs.offsets[-1])

    def image(self, index: int) -> np.ndarray:
        """Image ``index``: a read-only ``H x W`` view of the shared buffer, no copy."""
        return _read_only(self._images.view(index))

    def pair(self, index: int, scale: int, patch_px: int = 0, patches: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``samples.image_lr`` of image ``index``, from memory (read-only views), whatever the
        patches (``ImageSource.pair``'s signature)."""
        if scale != self.scale:
            raise ValueError(f"the cache holds LR at scale {self.scale}, not {scale}")
        return crop_to_scale(self.image(index), scale), _read_only(self._lrs.view(index))

    def key(self, index: int) -> str:
        return self._source.key(index)

    def image_shape(self, index: int) -> tuple[int, int]:
        return self._images.shapes[index]
