"""``data.cache=decoded``: a training split decoded once and held in memory, for sets that fit.

Inflating a 1024 px PNG is most of what a training patch costs on the CPU; a set that fits in
memory (the 312-image NIH sample is 312 MiB decoded) need not pay it every epoch. The images lie
in one shared-memory uint8 buffer, so DataLoader workers (forked or spawned) and DALI's external
source read the same pages instead of each holding a copy.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from dist_train.config import ConfigError

MIB = 2**20


class DecodedImages:
    """An image source (``len``, ``image``, ``key``, ``image_shape``) whose images are decoded
    once, here, in parallel threads (PNG inflation releases the GIL).

    The size check uses the image headers, so a set over ``max_mb`` is refused before any
    decoding, with one line naming the field.
    """

    def __init__(self, source, max_mb: int, threads: int = 1):
        self._source = source
        shapes = [tuple(source.image_shape(i)) for i in range(len(source))]
        sizes = np.array([height * width for height, width in shapes], dtype=np.int64)
        needed_mib = sizes.sum() / MIB
        if needed_mib > max_mb:
            raise ConfigError(f"config field 'data.cache_max_mb': the {len(shapes)} decoded training images "
                              f"need {needed_mib:.0f} MiB, over the cap of {max_mb} MiB; raise "
                              "data.cache_max_mb or set data.cache=none")
        self._shapes = shapes
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])
        self._pixels = torch.empty(int(self._offsets[-1]), dtype=torch.uint8).share_memory_()
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for _ in pool.map(self._fill, range(len(shapes))):
                pass

    def _fill(self, index: int) -> None:
        image = self._source.image(index)
        if image.shape != self._shapes[index]:
            raise ValueError(f"{self._source.key(index)}: decodes to {image.shape[0]}x{image.shape[1]}, "
                             f"its header says {self._shapes[index][0]}x{self._shapes[index][1]}")
        self._view(index)[...] = image

    def __len__(self) -> int:
        return len(self._shapes)

    @property
    def nbytes(self) -> int:
        return int(self._offsets[-1])

    def _view(self, index: int) -> np.ndarray:
        start, stop = self._offsets[index], self._offsets[index + 1]
        return self._pixels[start:stop].numpy().reshape(self._shapes[index])

    def image(self, index: int) -> np.ndarray:
        """Image ``index``: a read-only ``H x W`` view of the shared buffer, no copy."""
        view = self._view(index)
        view.flags.writeable = False
        return view

    def key(self, index: int) -> str:
        return self._source.key(index)

    def image_shape(self, index: int) -> tuple[int, int]:
        return self._shapes[index]
