"""The pure-PyTorch shard loader (backend ``torch``): the twin of DALI and the tests' reference.

Why: the trainer assumes the batches are right (shape, range, LR = the degradation of HR), that
the ranks split every epoch exactly, and that a resumed run sees what the uninterrupted one
would have; each test below would fail if one of those broke.
"""
from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from dist_train.data import build_train_loader, build_val_loader
from dist_train.data.samples import decode_gray8
from dist_train.data.shardset import load_split
from test_loader_support import assert_lr_is_degradation, build_shard_set, tiny_config

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return build_shard_set(tmp_path_factory.mktemp("torch-loader"))


def _epoch_keys(loader) -> list[list[str]]:
    keys = []
    for _ in range(loader.batches_per_epoch):
        loader.next_batch()
        keys.append(list(loader.last_keys))
    return keys


def test_batches_have_the_contract_shapes_and_lr_is_the_degradation(shards):
    """N x 1 x h x w float32 in [0, 1], LR = downsample(HR) (docs/contracts.md §3)."""
    loader = build_train_loader(tiny_config(shards, "torch"), 0, 1, CPU)
    try:
        lr, hr = loader.next_batch()
    finally:
        loader.close()
    assert hr.shape == (4, 1, 32, 32) and lr.shape == (4, 1, 8, 8)
    assert lr.dtype == hr.dtype == torch.float32
    assert 0 <= hr.min() and hr.max() <= 1 and hr.std() > 0.01
    assert_lr_is_degradation(lr, hr, 4)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_every_epoch_exactly(shards, world_size):
    """In each of 3 epochs the ranks' samples are disjoint and cover the train split; a rank's
    padding repeats only its own samples."""
    train_keys = {ref.key for ref in load_split(shards, "train").sample_refs()}
    cfg = tiny_config(shards, "torch", workers=0)
    loaders = [build_train_loader(cfg, rank, world_size, CPU) for rank in range(world_size)]
    for _ in range(3):
        per_rank = [{key for batch in _epoch_keys(loader) for key in batch} for loader in loaders]
        assert sum(len(keys) for keys in per_rank) == len(train_keys)
        assert set().union(*per_rank) == train_keys


def test_same_seed_same_batches_other_seed_other_batches(shards):
    """Reproducibility comes from train.seed alone, not from worker timing."""
    def first_batches(seed: int, workers: int):
        loader = build_train_loader(tiny_config(shards, "torch", f"train.seed={seed}",
                                                workers=workers), 1, 2, CPU)
        out = [loader.next_batch()[1] for _ in range(3)]
        loader.close()
        return torch.stack(out)
    same = first_batches(5, 1)
    assert torch.equal(same, first_batches(5, 0))
    assert not torch.equal(same, first_batches(6, 1))


def test_resume_mid_epoch_gives_the_uninterrupted_batches(shards):
    """Stop after 4 batches (mid-epoch 1 of 3-batch epochs), resume in a new loader from the
    state dict: the next batches equal those of an uninterrupted run."""
    cfg = tiny_config(shards, "torch")
    uninterrupted = build_train_loader(cfg, 0, 2, CPU)
    expected = [uninterrupted.next_batch() for _ in range(8)]
    uninterrupted.close()
    first = build_train_loader(cfg, 0, 2, CPU)
    for _ in range(4):
        first.next_batch()
    state = first.state_dict()
    first.close()
    assert state["epoch"] == 1 and state["batch"] == 1
    resumed = build_train_loader(cfg, 0, 2, CPU)
    resumed.load_state_dict(state)
    for lr_expected, hr_expected in expected[4:]:
        lr, hr = resumed.next_batch()
        assert torch.equal(hr, hr_expected) and torch.equal(lr, lr_expected)
    resumed.close()


def test_validation_is_disjoint_unaugmented_and_scale_aligned(shards):
    """Ranks split the val split without overlap; whole images keep their pixels (trimmed to a
    multiple of the scale); centre crops have the asked size."""
    cfg = tiny_config(shards, "torch")
    parts = [build_val_loader(cfg, rank, 2, CPU) for rank in range(2)]
    keys = Counter(key for part in parts for key in part.keys)
    assert set(keys.values()) == {1} and len(keys) == load_split(shards, "val").n_samples
    for lr, hr in parts[0]:
        assert hr.shape == (1, 1, 96, 96) and lr.shape == (1, 1, 24, 24)
    cropped = build_val_loader(tiny_config(shards, "torch", val_crop_px=48), 0, 1, CPU)
    batches = list(cropped)
    assert sum(hr.shape[0] for _, hr in batches) == load_split(shards, "val").n_samples
    assert all(hr.shape[1:] == (1, 48, 48) and lr.shape[1:] == (1, 12, 12) for lr, hr in batches)


def test_sixteen_bit_png_is_scaled_not_clipped():
    """PIL's convert("L") clips 16-bit values to 255 (a white image); the twin scales them."""
    wide = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    png = io.BytesIO()
    Image.fromarray(wide).save(png, format="PNG")
    assert decode_gray8(png.getvalue()).tolist() == [[0, 100, 255]]
