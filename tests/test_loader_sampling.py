"""The sampling plan every backend shares (dist_train.data.sampling), checked without images.

These are the properties the trainer relies on: exactly-once epochs across ranks, ranks in
lockstep, padding that never leaks another rank's sample, reproducible randomness.
"""
from __future__ import annotations

import numpy as np
import pytest

from dist_train.data import sampling


@pytest.mark.parametrize("n_samples,world_size,batch_size", [(18, 2, 4), (17, 3, 4), (5, 5, 2), (40, 1, 8)])
def test_epochs_are_exactly_once_across_ranks(n_samples, world_size, batch_size):
    """Every epoch, the ranks' real samples are disjoint and cover the split; padding only
    repeats a rank's own samples (a shared sample would be trained twice per epoch, a dropped
    one never)."""
    for epoch in range(4):
        seen = []
        for rank in range(world_size):
            order = sampling.epoch_indices(n_samples, rank, world_size, epoch, 7, batch_size)
            start, stop = sampling.chunk_bounds(n_samples, sampling.rank_chunk(rank, world_size, epoch),
                                                world_size)
            assert len(order) == sampling.batches_per_epoch(n_samples, world_size, batch_size) * batch_size
            assert sorted(order[:stop - start]) == list(range(start, stop))
            assert set(order[stop - start:]) <= set(range(start, stop))
            seen.extend(order[:stop - start])
        assert sorted(seen) == list(range(n_samples))


def test_rank_meets_new_data_each_epoch_and_order_is_seeded():
    """The chunk moves on every epoch (as DALI's shards do) and the order depends on the seed,
    the rank and the epoch, and on nothing else."""
    a = sampling.epoch_indices(20, 0, 2, 0, seed=1, batch_size=5)
    assert set(a) != set(sampling.epoch_indices(20, 0, 2, 1, seed=1, batch_size=5))
    assert np.array_equal(a, sampling.epoch_indices(20, 0, 2, 0, seed=1, batch_size=5))
    assert not np.array_equal(a, sampling.epoch_indices(20, 0, 2, 0, seed=2, batch_size=5))
    assert np.array_equal(sampling.epoch_indices(20, 0, 2, 0, 1, 5, shuffle=False)[:10], np.arange(10))


def test_augmentations_are_a_function_of_position():
    """Same (seed, rank, epoch, batch) -> same augmentation; a different rank gets its own."""
    first = sampling.batch_augments(0, 0, 3, 5, 8)
    assert first == sampling.batch_augments(0, 0, 3, 5, 8)
    assert first != sampling.batch_augments(0, 1, 3, 5, 8)
    flags = np.array([[a.transpose, a.flip_h, a.flip_v] for a in sampling.batch_augments(0, 0, 0, 0, 400)])
    assert 0.35 < flags.mean() < 0.65  # all 8 symmetries get drawn, not a fixed one


def test_crop_anchor_reaches_every_position_and_stays_inside():
    """u in [0, 1) maps onto all ``size - patch + 1`` anchors, none out of bounds."""
    u = np.random.default_rng(0).random(5000, dtype=np.float32)
    anchors = {sampling.crop_anchor(x, 40, 32) for x in u}
    assert anchors == set(range(9))
    assert sampling.crop_anchor(np.float32(0.99999994), 40, 32) == 8


def test_val_indices_are_disjoint_and_independent_of_world_size():
    """Validation parts are disjoint and cover the split (or its first ``cap`` images) without
    padding, since the trainer sums metrics over ranks; the evaluated set is the same for any
    number of processes, so validation figures stay comparable."""
    for cap, expected in [(0, range(7)), (5, range(5)), (100, range(7))]:
        for world_size in (1, 2, 3):
            parts = [sampling.val_indices(7, rank, world_size, cap) for rank in range(world_size)]
            assert sorted(np.concatenate(parts).tolist()) == list(expected)
