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

from dist_train.data import build_train_loader, build_val_loader, sampling
from dist_train.data.samples import augment_pair, decode_gray8, image_lr, training_pair
from dist_train.data.shards_torch import decode_sample
from dist_train.data.shardset import load_split
from dist_train.degradation import downsample
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


def _undo_symmetry(patch: np.ndarray, augment: sampling.Augment) -> np.ndarray:
    """The inverse of transpose-then-flips."""
    if augment.flip_v:
        patch = patch[::-1, :]
    if augment.flip_h:
        patch = patch[:, ::-1]
    return patch.T if augment.transpose else patch


def test_a_patch_pair_is_the_whole_images_lr_cut_where_the_hr_patch_lies(shards):
    """A training pair is what a real LR radiograph gives: the HR patch lies on the scale grid
    of the image (trimmed, centred, to a multiple of the scale), and the LR patch is the
    reference LR of the whole image at that place under the same symmetry. At the patch's edges
    that differs from the LR of the HR patch alone, whose kernel is cut off there. Made from
    the patch and its margin only (few patches per image), the LR is the same, bit for bit."""
    image = decode_sample(load_split(shards, "train").sample_refs()[0])[:95, 1:]  # 95 x 95: trimmed
    scale, patch_px = 4, 32
    whole = torch.from_numpy(image[1:93, 1:93].astype(np.float32))[None, None] / 255
    whole_lr = (downsample(whole, scale)[0, 0] * 255).round().numpy().astype(np.uint8)
    hr_image, lr_image = image_lr(image, scale)
    assert np.array_equal(hr_image, image[1:93, 1:93]) and np.array_equal(lr_image, whole_lr)
    windows = np.lib.stride_tricks.sliding_window_view(hr_image, (patch_px, patch_px))
    edges_differ = 0
    for augment in sampling.batch_augments(seed=5, rank=0, epoch=0, batch=0, batch_size=24):
        hr = np.empty((patch_px, patch_px), np.uint8)
        lr = np.empty((patch_px // scale, patch_px // scale), np.uint8)
        augment_pair(hr_image, lr_image, augment, patch_px, scale, hr, lr)
        hr_local, lr_local = np.empty_like(hr), np.empty_like(lr)
        augment_pair(hr_image, None, augment, patch_px, scale, hr_local, lr_local)
        assert np.array_equal(hr_local, hr) and np.array_equal(lr_local, lr)
        found = np.argwhere((windows == _undo_symmetry(hr, augment)).all(axis=(2, 3)))
        on_grid = [(top, left) for top, left in found if top % scale == 0 and left % scale == 0]
        assert on_grid, f"{augment}: the HR patch is not a crop of the image on the scale grid"
        top, left = (int(v) // scale for v in on_grid[0])
        expected = whole_lr[top:top + patch_px // scale, left:left + patch_px // scale]
        assert np.array_equal(_undo_symmetry(lr, augment), expected)
        alone = (downsample(torch.from_numpy(hr.astype(np.float32))[None, None] / 255, scale) * 255).round()
        edges_differ += not np.array_equal(alone[0, 0].numpy(), lr)
    assert edges_differ >= 12
    assert training_pair(image, scale, patch_px, 1)[1] is None  # one 48 px region < the image
    assert np.array_equal(training_pair(image, scale, patch_px, 4)[1], whole_lr)


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
