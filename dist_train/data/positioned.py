"""A resumable ``TrainLoader`` over any map-style dataset whose item ``(epoch, group)`` is a group
of batches (the ``patches_per_image`` batches cut from one group of decoded images, ``sampling``).

When a group is a pure function of its position, resuming is only a matter of starting the sampler
at the saved group and dropping the batches of it already consumed: no replay of earlier groups,
no RNG state to carry.
"""
from __future__ import annotations

import signal
from collections import deque
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dist_train.distributed import STOP_SIGNALS


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


def check_resumable(state: dict, backend: str, world_size: int, batch_size: int,
                    patches_per_image: int = 1) -> None:
    """A saved position means the same batches only under the same backend, world size, batch size
    and patches per image."""
    from dist_train.checkpoint import CheckpointError

    # Positions saved before patches_per_image existed were cut with one patch per image.
    saved = (state["backend"], state["world_size"], state["batch_size"], state.get("patches_per_image", 1))
    now = (backend, world_size, batch_size, patches_per_image)
    if saved != now and int(state["batch"]) != 0:
        raise CheckpointError(f"data position saved with (data.backend, world size, data.batch_size, "
                              f"data.patches_per_image) = {saved} cannot resume mid-epoch under {now}; "
                              "resume with the same ones")


class TrainPosition:
    """Where the next training batch is, ``(epoch, batch)``, with what its meaning depends on."""

    def __init__(self, backend: str, world_size: int, batch_size: int, batches_per_epoch: int,
                 patches_per_image: int = 1):
        self.backend, self.world_size, self.batch_size = backend, world_size, batch_size
        self.batches_per_epoch, self.patches_per_image = batches_per_epoch, patches_per_image
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
                "world_size": self.world_size, "batch_size": self.batch_size,
                "patches_per_image": self.patches_per_image}

    def load_state_dict(self, state: dict) -> None:
        check_resumable(state, self.backend, self.world_size, self.batch_size, self.patches_per_image)
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


# Ctrl-C and schedulers signal the whole process group: a loader worker killed by one of the
# trainer's stop signals makes the trainer fail instead of writing its stop checkpoint, so workers
# ignore them and end when the trainer closes the loader (or dies).
WORKER_IGNORED_SIGNALS = STOP_SIGNALS


def leave_stop_signals_to_the_trainer(_worker_id: int) -> None:
    for signum in WORKER_IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class PositionedTrainLoader:
    """``TrainLoader`` over ``dataset[(epoch, group)] -> (lr, hr, keys)`` with worker processes.

    A group holds ``patches_per_image`` batches of ``batch_size`` patches, stacked in batch order,
    as uint8 (LR is on the 8-bit grid, docs/contracts.md §3, so uint8 carries it losslessly and workers
    pass a quarter of the bytes); batches become float in [0, 1] on the device.
    """

    def __init__(self, dataset: Dataset, groups_per_epoch: int, workers: int, device: torch.device,
                 backend: str, world_size: int, batch_size: int, patches_per_image: int = 1):
        self._dataset, self._workers, self._device = dataset, workers, device
        self._groups_per_epoch, self._batches_per_group = groups_per_epoch, patches_per_image
        self._position = TrainPosition(backend, world_size, batch_size,
                                       groups_per_epoch * patches_per_image, patches_per_image)
        self._iterator: Iterator | None = None
        self._pending: deque = deque()  # the batches of the current group not yet consumed
        self.last_keys: list[str] = []  # sample keys of the last batch, for tests and debugging

    @property
    def batches_per_epoch(self) -> int:
        return self._position.batches_per_epoch

    def _start(self) -> None:
        group, skip = divmod(self._position.batch, self._batches_per_group)
        loader = DataLoader(self._dataset, batch_size=None, num_workers=self._workers,
                            sampler=PositionsFrom((self._position.epoch, group), self._groups_per_epoch),
                            prefetch_factor=2 if self._workers else None,
                            pin_memory=self._device.type == "cuda",
                            worker_init_fn=leave_stop_signals_to_the_trainer if self._workers else None)
        self._iterator = iter(loader)
        self._next_group(skip)

    def _next_group(self, skip: int = 0) -> None:
        lr, hr, keys = next(self._iterator)
        size = self._position.batch_size
        self._pending.extend((lr[start:start + size], hr[start:start + size], keys[start:start + size])
                             for start in range(skip * size, len(keys), size))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._iterator is None:
            self._start()
        elif not self._pending:
            self._next_group()
        lr, hr, self.last_keys = self._pending.popleft()
        self._position.advance()
        return _unit_float(lr, self._device), _unit_float(hr, self._device)

    def state_dict(self) -> dict:
        """Position of the next batch, with what it depends on."""
        return self._position.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._position.load_state_dict(state)
        self.close()

    def close(self) -> None:
        self._iterator = None  # drops the DataLoader iterator and shuts its workers down
        self._pending.clear()


def _unit_float(batch_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] on ``device``; a division, bit-equal to DALI's ``x / 255``."""
    return batch_u8.to(device, non_blocking=True).float().div_(255.0)
