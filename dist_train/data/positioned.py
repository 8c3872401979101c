"""A resumable ``TrainLoader`` over any map-style dataset whose item ``(epoch, batch)`` is a batch.

When a batch is a pure function of its position (``sampling``), resuming is only a matter of
starting the sampler at the saved position: no replay, no RNG state to carry.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class PositionsFrom(Sampler):
    """Every ``(epoch, batch)`` from a starting position onwards, forever."""

    def __init__(self, start: tuple[int, int], batches_per_epoch: int):
        self.start, self.batches_per_epoch = start, batches_per_epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, batch = self.start
        while True:
            yield epoch, batch
            batch += 1
            if batch == self.batches_per_epoch:
                epoch, batch = epoch + 1, 0


def check_resumable(state: dict, backend: str, world_size: int, batch_size: int) -> None:
    """A saved position means the same batches only under the same backend, world size and batch size."""
    from dist_train.checkpoint import CheckpointError

    saved = (state["backend"], state["world_size"], state["batch_size"])
    if saved != (backend, world_size, batch_size) and int(state["batch"]) != 0:
        raise CheckpointError(f"data position saved with (data.backend, world size, data.batch_size) = {saved} "
                              f"cannot resume mid-epoch under {(backend, world_size, batch_size)}; resume with "
                              "the same ones")


class TrainPosition:
    """Where the next training batch is, ``(epoch, batch)``, with what its meaning depends on."""

    def __init__(self, backend: str, world_size: int, batch_size: int, batches_per_epoch: int):
        self.backend, self.world_size, self.batch_size = backend, world_size, batch_size
        self.batches_per_epoch = batches_per_epoch
        self.epoch, self.batch = 0, 0

    def advance(self) -> bool:
        """Count one batch consumed; True when that ended the epoch."""
        self.batch += 1
        if self.batch < self.batches_per_epoch:
            return False
        self.epoch, self.batch = self.epoch + 1, 0
        return True

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "backend": self.backend,
                "world_size": self.world_size, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        check_resumable(state, self.backend, self.world_size, self.batch_size)
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


class PositionedTrainLoader:
    """``TrainLoader`` over ``dataset[(epoch, batch)] -> (lr, hr, keys)`` with worker processes."""

    def __init__(self, dataset: Dataset, batches_per_epoch: int, workers: int,
                 device: torch.device, backend: str, world_size: int, batch_size: int):
        self._dataset, self._workers, self._device = dataset, workers, device
        self._position = TrainPosition(backend, world_size, batch_size, batches_per_epoch)
        self._iterator: Iterator | None = None
        self.last_keys: list[str] = []  # sample keys of the last batch, for tests and debugging

    @property
    def batches_per_epoch(self) -> int:
        return self._position.batches_per_epoch

    def _start(self) -> None:
        start = (self._position.epoch, self._position.batch)
        loader = DataLoader(self._dataset, batch_size=None, num_workers=self._workers,
                            sampler=PositionsFrom(start, self._position.batches_per_epoch),
                            prefetch_factor=2 if self._workers else None,
                            pin_memory=self._device.type == "cuda")
        self._iterator = iter(loader)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._iterator is None:
            self._start()
        lr, hr, self.last_keys = next(self._iterator)
        self._position.advance()
        return lr.to(self._device, non_blocking=True), hr.to(self._device, non_blocking=True)

    def state_dict(self) -> dict:
        """Position of the next batch, with what it depends on."""
        return self._position.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._position.load_state_dict(state)
        self.close()

    def close(self) -> None:
        self._iterator = None  # drops the DataLoader iterator and shuts its workers down
