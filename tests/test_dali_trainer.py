"""The shard backends plugged into the real trainer: configuration alone switches them.

Why: a loader backend is usable only when `data.backend=dali|torch` trains without changes to the training
loop, and when a resumed run continues with the batches the uninterrupted one had (the trainer
stores each rank's data position in its checkpoint).
"""
from __future__ import annotations

import pytest
import torch

from dist_train.checkpoint import complete_checkpoints
from dist_train.config import load_config
from dist_train.distributed import DistEnv
from dist_train.trainer import Trainer
from test_loader_support import build_shard_set

CPU = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return build_shard_set(tmp_path_factory.mktemp("trainer-shards"))


def _config(out_dir, shards, backend: str):
    return load_config("tiny_cpu", [
        f"train.out_dir={out_dir}", f"data.backend={backend}", f"data.shards={shards}",
        "data.patch_px=32", "data.batch_size=4", "data.workers=1", "data.val_crop_px=48",
        "data.val_max_images=2", "train.pretrain_steps=4", "train.gan_steps=4",
        "train.val_every=3", "train.ckpt_every=3", "train.keep_ckpts=3", "train.log_every=1"])


@pytest.mark.parametrize("backend", ["dali", "torch"])
def test_resumed_training_repeats_the_uninterrupted_losses(shards, tmp_path, backend):
    """Train 8 steps; separately stop at the step-3 checkpoint (mid-epoch: 18 samples make 5
    batches of 4) and resume: the resumed losses equal the uninterrupted ones bit for bit."""
    full = Trainer(_config(tmp_path / "full", shards, backend), CPU)
    full.train()
    full.close()
    step3 = [p for p in complete_checkpoints(tmp_path / "full") if p.name.endswith("00000003")][0]
    resumed = Trainer(_config(tmp_path / "resumed", shards, backend), CPU)
    resumed.resume(step3)
    resumed.train()
    resumed.close()
    assert resumed.step == full.step == 8
    assert list(resumed.loss_history) == list(full.loss_history)[3:]
