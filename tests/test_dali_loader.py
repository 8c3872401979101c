"""The DALI shard loader (backend ``dali``) on CPU with real pipelines, against the torch twin.

Why: DALI makes LR inside its own graph and does its own sharding and shuffling, so nothing but
these tests ties it to the reference degradation and to the sampling semantics the trainer
assumes. How DALI and torch are compared, plainly:
* with shuffling off, both read the same samples in the same order and draw the same
  augmentation, so the HR patches must be identical pixel for pixel and LR too (both on the
  8-bit grid), but for the rare pixel within float error of a rounding boundary;
* with shuffling on, DALI's shuffle buffer orders a rank's chunk differently from the twin's
  permutation, so only the *set* of samples per rank and epoch is compared (it must be equal).
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dist_train.data import build_train_loader, build_val_loader
from dist_train.data.dali_graph import antialias_bicubic_taps
from dist_train.data.shardset import Shard, SplitShards, load_split
from dist_train.data.shards_dali import DaliTrainLoader
from dist_train.data.shards_torch import build_torch_train_loader
from test_loader_support import assert_lr_is_degradation, assert_same_lr, build_shard_set, tiny_config

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return build_shard_set(tmp_path_factory.mktemp("dali-loader"))


def _epoch_key_sets(loader, epochs: int) -> list[set[str]]:
    sets = []
    for _ in range(epochs):
        keys = set()
        for _ in range(loader.batches_per_epoch):
            loader.next_batch()
            keys.update(loader.last_keys)
        sets.append(keys)
    return sets


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_batches_have_contract_shapes_and_lr_matches_reference_degradation(shards, scale):
    """N x 1 x h x w float32 in [0, 1]; with shuffling off the LR DALI makes in its graph equals
    the twin's (the reference degradation of the whole image, cut at the patch), borders
    included, and inside the patch it is the reference degradation of the HR DALI returns."""
    cfg = tiny_config(shards, "dali", f"model.scale={scale}")
    loader = DaliTrainLoader(cfg, 0, 1, CPU, shuffle=False)
    twin = build_torch_train_loader(tiny_config(shards, "torch", f"model.scale={scale}", workers=0), 0, 1,
                                    CPU, shuffle=False)
    for _ in range(2):
        lr, hr = loader.next_batch()
        lr_twin, hr_twin = twin.next_batch()
        assert hr.shape == (4, 1, 32, 32) and lr.shape == (4, 1, 32 // scale, 32 // scale)
        assert lr.dtype == hr.dtype == torch.float32 and lr.device == CPU
        assert 0 <= lr.min() and lr.max() <= 1 and 0 <= hr.min() and hr.max() <= 1
        assert torch.equal(hr, hr_twin)
        assert_same_lr(lr, lr_twin)
        if 32 // scale > 4:
            assert_lr_is_degradation(lr, hr, scale)
    loader.close()


def test_lr_kernel_is_pytorch_antialiased_bicubic():
    """The in-graph taps are the Keys a=-0.5 cubic stretched by the scale, as PIL and
    F.interpolate(antialias=True) use; a kernel of the wrong family would blur differently."""
    taps = antialias_bicubic_taps(4)
    assert len(taps) == 16 and taps.sum() == pytest.approx(4.0)
    impulse = torch.zeros(1, 1, 1, 64)
    impulse[..., 33] = 1.0  # LR pixel 8 sees HR 33 at tap 33 - (4*8 + 2) + 8 = 7
    lr = torch.nn.functional.interpolate(impulse, size=(1, 16), mode="bicubic", antialias=True)
    assert lr[0, 0, 0, 8].item() == pytest.approx(taps[7] / taps.sum(), abs=1e-6)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_every_epoch_exactly_and_like_the_twin(shards, world_size):
    """In each of 3 epochs DALI's ranks see disjoint samples covering the train split, and each
    rank sees the same set of samples as the torch twin's rank in that epoch."""
    train_keys = {ref.key for ref in load_split(shards, "train").sample_refs()}
    cfg = tiny_config(shards, "dali")
    dali_sets = [_epoch_key_sets(DaliTrainLoader(cfg, r, world_size, CPU), 3) for r in range(world_size)]
    torch_cfg = tiny_config(shards, "torch", workers=0)
    torch_sets = [_epoch_key_sets(build_torch_train_loader(torch_cfg, r, world_size, CPU), 3)
                  for r in range(world_size)]
    for epoch in range(3):
        per_rank = [dali_sets[r][epoch] for r in range(world_size)]
        assert sum(len(keys) for keys in per_rank) == len(train_keys)
        assert set().union(*per_rank) == train_keys
        assert per_rank == [torch_sets[r][epoch] for r in range(world_size)]


def test_same_seed_same_batches_other_seed_other_batches(shards):
    """DALI's shuffle and the augmentation are seeded by train.seed, rank and epoch only."""
    def batches(seed: int) -> torch.Tensor:
        loader = build_train_loader(tiny_config(shards, "dali", f"train.seed={seed}"), 1, 2, CPU)
        out = torch.stack([loader.next_batch()[1] for _ in range(4)])
        loader.close()
        return out
    same = batches(3)
    assert torch.equal(same, batches(3))
    assert not torch.equal(same, batches(4))


def test_resume_mid_epoch_gives_the_uninterrupted_batches(shards):
    """A loader restored from a mid-epoch state dict continues with exactly the batches (and
    the shuffle) the uninterrupted run had."""
    cfg = tiny_config(shards, "dali")
    uninterrupted = build_train_loader(cfg, 1, 2, CPU)
    expected = [uninterrupted.next_batch() for _ in range(7)]
    first = build_train_loader(cfg, 1, 2, CPU)
    for _ in range(4):
        first.next_batch()
    state = first.state_dict()
    assert (state["epoch"], state["batch"]) == (1, 1)
    resumed = build_train_loader(cfg, 1, 2, CPU)
    resumed.load_state_dict(state)
    for lr_expected, hr_expected in expected[4:]:
        lr, hr = resumed.next_batch()
        assert torch.equal(hr, hr_expected) and torch.equal(lr, lr_expected)


def test_dali_and_torch_give_the_same_crops_without_shuffling(shards):
    """With shuffling off, DALI and the twin decode, crop, flip and transpose identically: same
    HR pixels, the same 8-bit LR (real samples of each epoch; the padding differs by design)."""
    cfg = tiny_config(shards, "dali")
    dali = DaliTrainLoader(cfg, 0, 2, CPU, shuffle=False)
    twin = build_torch_train_loader(tiny_config(shards, "torch", workers=0), 0, 2, CPU, shuffle=False)
    n_train = load_split(shards, "train").n_samples
    real_per_epoch = n_train // 2  # 18 samples, 2 ranks: 9 real samples then 3 padding
    for _ in range(2):
        seen = 0
        for _ in range(dali.batches_per_epoch):
            lr_d, hr_d = dali.next_batch()
            lr_t, hr_t = twin.next_batch()
            real = max(0, min(4, real_per_epoch - seen))
            seen += 4
            assert dali.last_keys[:real] == list(twin.last_keys[:real])
            assert torch.equal(hr_d[:real], hr_t[:real])
            if real:
                assert_same_lr(lr_d[:real], lr_t[:real])


def test_validation_matches_the_twin(shards):
    """DALI's validation gives each rank the same images as the twin, whole (trimmed to the
    scale) or centre-cropped, capped or not, with the twin's 8-bit LR."""
    for crop, cap in ((0, 0), (48, 0), (48, 5)):
        for rank in range(2):
            settings = {"val_crop_px": crop, "val_max_images": cap}
            dali = build_val_loader(tiny_config(shards, "dali", **settings), rank, 2, CPU)
            twin = build_val_loader(tiny_config(shards, "torch", **settings), rank, 2, CPU)
            pairs = list(zip(dali, twin, strict=True))
            assert dali.keys == twin.keys and pairs
            for (lr_d, hr_d), (lr_t, hr_t) in pairs:
                assert torch.equal(hr_d, hr_t)
                assert_same_lr(lr_d, lr_t)


def test_sample_without_png_fails_loudly(tmp_path):
    """missing_component_behavior='error': a malformed sample stops the run instead of
    becoming an empty tensor or being skipped silently."""
    import webdataset as wds
    tar = tmp_path / "train-000000.tar"
    png = io.BytesIO()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(png, format="PNG")
    with wds.TarWriter(str(tar)) as writer:
        writer.write({"__key__": "good", "png": png.getvalue(), "json": b"{}"})
        writer.write({"__key__": "broken", "json": json.dumps({"image": "broken.png"}).encode()})
    index = tar.with_suffix(".idx")
    subprocess.run([str(Path(sys.executable).with_name("wds2idx")), str(tar), str(index)], check=True,
                   capture_output=True)
    split = SplitShards("train", (Shard(tar, index, 2),))
    cfg = tiny_config(tmp_path, "dali", batch_size=2)
    with pytest.raises(RuntimeError, match="sample"):  # DALI: "Underful sample detected ..."
        DaliTrainLoader(cfg, 0, 1, CPU, split=split).next_batch()


def test_validation_split_smaller_than_the_world(tmp_path):
    """DALI refuses more shards than samples; one val image under three ranks must still reach
    the rank the sampling plan gives it, and the others nothing, instead of an exception
    (found by the demo)."""
    import webdataset as wds

    from dist_train.data.shards_dali import DaliValLoader
    tar = tmp_path / "val-000000.tar"
    png = io.BytesIO()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(png, format="PNG")
    with wds.TarWriter(str(tar)) as writer:
        writer.write({"__key__": "only", "png": png.getvalue(), "json": b"{}"})
    index = tar.with_suffix(".idx")
    subprocess.run([str(Path(sys.executable).with_name("wds2idx")), str(tar), str(index)], check=True,
                   capture_output=True)
    split = SplitShards("val", (Shard(tar, index, 1),))
    cfg = tiny_config(tmp_path, "dali", val_crop_px=0)
    seen = [len(list(DaliValLoader(cfg, rank, 3, CPU, split=split))) for rank in range(3)]
    from dist_train.data import sampling
    assert seen == [len(sampling.val_indices(1, rank, 3)) for rank in range(3)] and sum(seen) == 1
