"""Several patches per decoded image (``data.patches_per_image``) and the decoded cache (``data.cache``).

Why: cutting k patches from each decoded radiograph is what lets a few CPU cores feed a GPU, but
it must not bend the epoch: every image still comes k times per epoch across ranks, ranks stay
disjoint, a resumed run sees the uninterrupted batches, and a batch mixes several images instead
of being k crops of one. DALI and the torch twin must still cut the same kind of patches. The
cache must be invisible except in speed (the decoder's pixels) and refuse, in one line, a set over
its cap.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from dist_train.config import ConfigError
from dist_train.data import build_train_loader
from dist_train.data.cache import DecodedImages
from dist_train.data.folder import folder_images, list_images
from dist_train.data.samples import image_lr
from dist_train.data.shards_dali import DaliTrainLoader
from dist_train.data.shards_torch import build_torch_train_loader, decode_sample, shard_images
from dist_train.data.shardset import load_split
from test_loader_support import assert_lr_is_degradation, assert_same_lr, build_shard_set, tiny_config

CPU = torch.device("cpu")
K = 4  # patches per image in these tests


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return build_shard_set(tmp_path_factory.mktemp("patch-loader"))  # 18 train images, 96 px


def _config(shards, backend: str, **data):
    return tiny_config(shards, backend, **({"patches_per_image": K} | data))


def _epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    out = []
    for _ in range(loader.batches_per_epoch):
        lr, hr = loader.next_batch()
        out.append((lr, hr, list(loader.last_keys)))
    return out


def _train_keys(shards) -> list[str]:
    return [ref.key for ref in load_split(shards, "train").sample_refs()]


def test_patch_plan_is_seeded_and_reduces_to_one_patch_per_image():
    """The group's patch order is a seeded permutation of its patches (new per group); with one
    patch per image the augmentations are those of the old one-patch batches and nothing is
    reordered, so k = 1 changes no batch."""
    from dist_train.data import sampling
    assert sampling.group_augments(3, 1, 2, 5, 8, 1) == sampling.batch_augments(3, 1, 2, 5, 8)
    assert np.array_equal(sampling.group_patch_order(3, 1, 2, 5, 8, 1), np.arange(8))
    order = sampling.group_patch_order(3, 1, 2, 5, 4, K)
    assert sorted(order) == list(range(4 * K)) and not np.array_equal(order, np.arange(4 * K))
    assert np.array_equal(order, sampling.group_patch_order(3, 1, 2, 5, 4, K))
    assert not np.array_equal(order, sampling.group_patch_order(3, 1, 2, 6, 4, K))
    assert np.array_equal(sampling.group_patch_order(3, 1, 2, 5, 4, K, shuffle=False), np.arange(4 * K))


@pytest.mark.parametrize("field,value", [("patches_per_image", 0), ("cache", "disk"), ("cache_max_mb", 0)])
def test_bad_patch_and_cache_settings_are_refused(shards, field, value):
    with pytest.raises(ConfigError, match=f"data.{field}"):
        _config(shards, "torch", **{field: value})


@pytest.mark.parametrize("backend", ["torch", "dali"])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_every_image_comes_k_times_per_epoch_and_ranks_are_disjoint(shards, backend, world_size):
    """Batches of 3 (the ranks' chunks of 18, 9 or 6 images need no padding): in each of two
    epochs every train image is cut into exactly K patches, all on one rank; an epoch is K times
    the batches of one patch per image."""
    loaders = [build_train_loader(_config(shards, backend, batch_size=3), r, world_size, CPU)
               for r in range(world_size)]
    assert all(loader.batches_per_epoch == K * 18 // world_size // 3 for loader in loaders)
    for _ in range(2):
        per_rank = [Counter(key for _, _, keys in _epoch(loader) for key in keys) for loader in loaders]
        for a in range(world_size):
            for b in range(a + 1, world_size):
                assert not set(per_rank[a]) & set(per_rank[b])
        assert sum(per_rank, Counter()) == Counter({key: K for key in _train_keys(shards)})
    for loader in loaders:
        loader.close()


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_padding_repeats_whole_images_of_the_rank(shards, backend):
    """Batches of 4 from chunks of 9 images: the padding images (own chunk only) also come as K
    patches each, so every count is a multiple of K and every image is seen."""
    loaders = [build_train_loader(_config(shards, backend), r, 2, CPU) for r in range(2)]
    per_rank = [Counter(key for _, _, keys in _epoch(loader) for key in keys) for loader in loaders]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert set(per_rank[0]) | set(per_rank[1]) == set(_train_keys(shards))
    assert all(count % K == 0 for counts in per_rank for count in counts.values())


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_batches_mix_images_and_each_patch_is_its_own_crop(shards, backend):
    """A batch holds patches of several images (the group's patches are shuffled together), and
    the K patches of an image are different crops, not one crop repeated; LR is the 8-bit
    degradation of each HR patch."""
    loader = build_train_loader(_config(shards, backend, batch_size=3), 0, 1, CPU)
    batches = _epoch(loader)
    loader.close()
    distinct = [len(set(keys)) for _, _, keys in batches]
    assert np.mean(distinct) >= 2 and max(distinct) == 3
    patches: dict[str, list[torch.Tensor]] = {}
    for lr, hr, keys in batches:
        assert_lr_is_degradation(lr, hr, 4)
        for key, patch in zip(keys, hr):
            patches.setdefault(key, []).append(patch)
    for crops in patches.values():
        assert len(crops) == K and len({c.numpy().tobytes() for c in crops}) > 1


@pytest.mark.parametrize("backend,cache", [("torch", "none"), ("dali", "none"), ("dali", "decoded")])
def test_resume_mid_group_gives_the_uninterrupted_batches(shards, backend, cache):
    """Stopped inside a group of batches (6 batches into 12-batch epochs, and 13: the next
    epoch), a loader restored from the state dict continues with exactly the uninterrupted
    batches, across the epoch boundary."""
    cfg = _config(shards, backend, cache=cache)
    uninterrupted = build_train_loader(cfg, 1, 2, CPU)
    expected = [uninterrupted.next_batch() for _ in range(16)]
    uninterrupted.close()
    for stop in (6, 13):
        first = build_train_loader(cfg, 1, 2, CPU)
        for _ in range(stop):
            first.next_batch()
        state = first.state_dict()
        first.close()
        assert (state["epoch"], state["batch"], state["patches_per_image"]) == (stop // 12, stop % 12, K)
        resumed = build_train_loader(cfg, 1, 2, CPU)
        resumed.load_state_dict(state)
        for lr_expected, hr_expected in expected[stop:]:
            lr, hr = resumed.next_batch()
            assert torch.equal(hr, hr_expected) and torch.equal(lr, lr_expected)
        resumed.close()


def test_dali_and_torch_cut_the_same_patches_unshuffled(shards):
    """Shuffling off, DALI's k graph branches and the twin's loop give the same HR patches pixel
    for pixel in the same slots, and the same 8-bit LR."""
    dali = DaliTrainLoader(_config(shards, "dali", batch_size=3), 0, 2, CPU, shuffle=False)
    twin = build_torch_train_loader(_config(shards, "torch", batch_size=3, workers=0), 0, 2, CPU,
                                    shuffle=False)
    for _ in range(dali.batches_per_epoch + 2):
        lr_d, hr_d = dali.next_batch()
        lr_t, hr_t = twin.next_batch()
        assert dali.last_keys == list(twin.last_keys)
        assert torch.equal(hr_d, hr_t)
        assert_same_lr(lr_d, lr_t)


def test_dali_and_torch_patch_statistics_agree_shuffled(shards):
    """Shuffled, DALI reads a rank's chunk in another order, so its patches of an image are other
    crops than the twin's; over three epochs the two must still cut the same images K times
    each and agree on the pixel statistics of HR and LR patches."""
    stats = {}
    for backend in ("dali", "torch"):
        loader = build_train_loader(_config(shards, backend), 0, 1, CPU)
        batches = [batch for _ in range(3) for batch in _epoch(loader)]
        loader.close()
        lr = torch.cat([b[0] for b in batches])
        hr = torch.cat([b[1] for b in batches])
        counts = Counter(key for b in batches for key in b[2])
        stats[backend] = (counts, hr.mean().item(), hr.std().item(), lr.mean().item(), lr.std().item())
    (counts_d, *dali), (counts_t, *twin) = stats["dali"], stats["torch"]
    assert set(counts_d) == set(counts_t) == set(_train_keys(shards))
    assert all(count % K == 0 for count in (*counts_d.values(), *counts_t.values()))
    assert dali == pytest.approx(twin, rel=0.1)


def test_cache_holds_the_decoders_pixels(shards, tmp_path):
    """The cached image of every sample (shards) and every file (folder backend) equals what
    the decoder gives, and its cached LR what the degradation gives; the cached loader gives
    the uncached loader's batches."""
    source = shard_images(load_split(shards, "train"))
    cached = DecodedImages(source, max_mb=16, threads=2, scale=4)
    assert len(cached) == len(source) and cached.nbytes == 18 * (96 * 96 + 24 * 24)
    for i, ref in enumerate(source.items):
        assert np.array_equal(cached.image(i), decode_sample(ref)) and cached.key(i) == ref.key
        hr, lr = image_lr(decode_sample(ref), 4)
        assert np.array_equal(cached.pair(i, 4)[0], hr) and np.array_equal(cached.pair(i, 4)[1], lr)
    folder = folder_images(list_images(shards.parent / "source"))
    cached_folder = DecodedImages(folder, max_mb=16)
    assert all(np.array_equal(cached_folder.image(i), folder.image(i)) for i in range(len(folder)))
    plain = build_train_loader(_config(shards, "torch"), 0, 2, CPU)
    from_cache = build_train_loader(_config(shards, "torch", cache="decoded"), 0, 2, CPU)
    for _ in range(plain.batches_per_epoch + 1):
        lr, hr = plain.next_batch()
        lr_c, hr_c = from_cache.next_batch()
        assert torch.equal(hr, hr_c) and torch.equal(lr, lr_c)
    plain.close()
    from_cache.close()


def test_cached_dali_gives_the_twins_batches(shards):
    """From the cache DALI reads the twin's order (shuffled), so its batches are the twin's:
    same keys, same HR pixels, same 8-bit LR."""
    dali = build_train_loader(_config(shards, "dali", cache="decoded"), 1, 2, CPU)
    twin = build_train_loader(_config(shards, "torch", workers=0), 1, 2, CPU)
    for _ in range(dali.batches_per_epoch + 3):
        lr_d, hr_d = dali.next_batch()
        lr_t, hr_t = twin.next_batch()
        assert dali.last_keys == list(twin.last_keys)
        assert torch.equal(hr_d, hr_t)
        assert_same_lr(lr_d, lr_t)
    dali.close()


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_cache_refuses_a_set_over_its_cap_in_one_line(tmp_path_factory, backend):
    """18 train images of 256 px are 1.1 MiB decoded: over data.cache_max_mb=1 both backends stop
    at build time with one line that names the field and the fix."""
    large = build_shard_set(tmp_path_factory.mktemp(f"large-{backend}"), size_px=256)
    with pytest.raises(ConfigError) as refused:
        build_train_loader(_config(large, backend, cache="decoded", cache_max_mb=1), 0, 1, CPU)
    message = str(refused.value)
    assert "\n" not in message and "data.cache_max_mb" in message and "data.cache=none" in message
    assert "1 MiB" in message
