"""The DeepSpeed backend: its generated JSON configs (fast) and two-process ZeRO-2 bf16 training
with a resume (real processes on DeepSpeed's CPU accelerator with gloo).

The slow test starts the run with ``cxr-sr launch --launcher deepspeed`` (the deepspeed launcher)
and resumes it under torchrun: both only set the environment, so a checkpoint does not care which
launcher wrote it. The resumed losses must equal the uninterrupted ones exactly, which needs both
engines' ZeRO partitions, optimizer and scheduler state, the trainer state and every rank's RNG
and data position to come back.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.train_bench import read_scalars
from dist_train.backends.deepspeed_config import deepspeed_config
from dist_train.checkpoint import complete_checkpoints
from dist_train.config import ConfigError, load_config
from tests.dist_helpers import copy_run, free_port, process_env, run, tiny_args, torchrun, write_tiny_images

READY_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "launch" / "configs").glob("ds_*.json"))


def _cfg(*overrides: str):
    return load_config("tiny_cpu", ["dist.backend=deepspeed", *overrides])


@pytest.mark.parametrize("path", READY_CONFIGS, ids=lambda p: p.stem)
def test_ready_configs_give_complete_deepspeed_configs(path):
    """Each ready JSON (ZeRO 1/2 x bf16/fp16) combines with our config into what DeepSpeed needs."""
    stage, precision = path.stem.split("_")[1:]
    config = deepspeed_config(_cfg(f"dist.deepspeed_config={path}", f"train.precision={precision}"))
    assert config["zero_optimization"]["stage"] == int(stage[-1])
    assert config[precision]["enabled"] is True and ("bf16" if precision == "fp16" else "fp16") not in config
    assert config["data_types"]["buffer_dtype"] == precision  # BatchNorm statistics follow the weights
    assert config["train_micro_batch_size_per_gpu"] == 8 and config["gradient_accumulation_steps"] == 1
    assert config["gradient_clipping"] == 1.0
    assert "optimizer" not in config and "scheduler" not in config  # client optimizers: no fused_adam build


def test_generated_config_follows_our_fields_without_a_json():
    config = deepspeed_config(_cfg("dist.zero_stage=1", "train.precision=fp32", "optim.grad_clip=0.5"))
    assert config["zero_optimization"] == {"stage": 1}
    assert "bf16" not in config and "fp16" not in config and config["gradient_clipping"] == 0.5
    assert deepspeed_config(_cfg())["zero_optimization"]["stage"] == 2  # the default without a JSON


@pytest.mark.parametrize("base, overrides, message", [
    ({"bf16": {"enabled": True}}, ["train.precision=fp32"], "set train.precision=bf16"),
    ({"zero_optimization": {"stage": 1}}, ["dist.zero_stage=2"], "make them equal"),
    ({"zero_optimization": {"stage": 3}}, [], "ZeRO-3"),
    ({"optimizer": {"type": "Adam"}}, [], "remove 'optimizer'"),
    ({"train_batch_size": 64}, [], "data.batch_size"),
])
def test_conflicting_json_is_an_error_naming_the_fix(tmp_path, base, overrides, message):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(base))
    with pytest.raises(ConfigError, match=message):
        deepspeed_config(_cfg(f"dist.deepspeed_config={path}", *overrides))


def test_missing_json_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        deepspeed_config(_cfg(f"dist.deepspeed_config={tmp_path / 'nope.json'}"))


def test_fp16_on_the_cpu_is_refused_with_the_fix():
    """DeepSpeed's CPU accelerator has no fp16; say so in our words, before DeepSpeed starts."""
    from dist_train.backends.deepspeed_backend import DeepSpeedBackend
    from dist_train.distributed import DistEnv
    from dist_train.precision import Precision

    cfg = _cfg("train.precision=fp16", "train.device=cpu")
    env = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="use bf16 or fp32"):
        DeepSpeedBackend(cfg, env, Precision("fp16", env.device)).wrap(torch.nn.Identity(), torch.nn.Identity())


@pytest.mark.slow
def test_zero2_bf16_two_processes_train_the_gan_and_resume_with_identical_losses(tmp_path):
    images = write_tiny_images(tmp_path / "images")
    out = tmp_path / "run"
    schedule = ("train.pretrain_steps=2", "train.gan_steps=6", "train.ckpt_every=4", "train.precision=bf16",
                f"dist.deepspeed_config={READY_CONFIGS[-1].parent / 'ds_zero2_bf16.json'}")
    args = tiny_args(images, out, *schedule)
    run([sys.executable, "-m", "launch", "launch", "--launcher", "deepspeed", "--nproc", "2",
         "--master-port", str(free_port()), *args], tmp_path / "full.txt")
    full = read_scalars(out)
    folder = complete_checkpoints(out)[-1]
    assert folder.name == "step_00000008" and not (folder / "latest").exists()
    for net in ("g", "d"):
        saved = sorted(p.name for p in (folder / f"engine_{net}").iterdir())
        assert saved == ["bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
                         "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt", "mp_rank_00_model_states.pt"]
    assert {"rank0.pt", "rank1.pt", "trainer.pt", "deepspeed_config.json"} <= {p.name for p in folder.iterdir()}
    # The GAN phase trained both networks: D's logits moved apart and G's weights changed.
    assert all(torch.isfinite(torch.tensor(list(full[t].values()))).all() for t in ("train/g_total", "train/d_loss"))
    assert len(set(full["train/d_loss"].values())) > 1
    first, last = (torch.load(p / "trainer.pt", map_location="cpu", weights_only=False)["generator"]
                   for p in complete_checkpoints(out))
    assert any(not torch.equal(first[k], last[k]) for k in first)

    resumed = copy_run(out, tmp_path / "resumed", drop_after_step=4)
    run(torchrun(2, ["--resume", *tiny_args(images, resumed, *schedule), "dist.backend=deepspeed"]),
        tmp_path / "resumed.txt")
    assert "step_00000004 at step 4" in (tmp_path / "resumed.txt").read_text()
    assert len(list((resumed / "tensorboard").iterdir())) == 2  # the copied events and the resumed run's
    again = read_scalars(resumed)
    for tag in ("train/g_total", "train/g_pixel", "train/g_adversarial", "train/d_loss"):
        assert sorted(again[tag]) == sorted(full[tag])
        for step in range(5, 9):
            if step in full[tag]:
                assert again[tag][step] == full[tag][step], f"{tag} differs at step {step} after the resume"


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 1])
def test_other_zero_stages_train_the_gan_with_batchnorm_in_bf16(tmp_path, stage):
    """ZeRO 0 (DeepSpeed's bf16 optimizer) and 1 in one process, with BatchNorm in both networks:
    the GAN step's frozen bare-D call and the bf16 buffers must work with every stage we offer."""
    images = write_tiny_images(tmp_path / "images")
    out = tmp_path / "run"
    args = tiny_args(images, out, "train.pretrain_steps=1", "train.gan_steps=2", "train.precision=bf16",
                     "dist.backend=deepspeed", f"dist.zero_stage={stage}", "model.batchnorm=true",
                     "model.d_batchnorm=true")
    run([sys.executable, "-m", "dist_train", *args], tmp_path / "log.txt")
    losses = read_scalars(out)
    assert sorted(losses["train/d_loss"]) == [2, 3]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses["train/g_total"].values())
    assert complete_checkpoints(out)[-1].name == "step_00000003"


@pytest.mark.slow
def test_nan_on_one_rank_skips_the_update_of_both_zero2_engines(tmp_path):
    """A NaN generator loss on rank 1 only: both ranks must skip G's engine step together (ZeRO-2
    reduces gradients inside backward, so a rank that went ahead alone would hang the other)."""
    images = write_tiny_images(tmp_path / "images")
    out = tmp_path / "run"
    args = tiny_args(images, out, "train.pretrain_steps=2", "train.gan_steps=3", "train.precision=bf16",
                     "dist.backend=deepspeed", "dist.zero_stage=2")
    run(torchrun(2, args, script="fault_train.py"), tmp_path / "log.txt", env=process_env(CXR_SR_TEST_NAN="1:2,3"))
    scalars = read_scalars(out)
    assert scalars["train/bad_steps"] == {2: 1.0, 3: 2.0}
    assert sorted(scalars["train/d_loss"]) == [3, 4, 5]  # D kept training: only G's update was skipped
    assert complete_checkpoints(out)[-1].name == "step_00000005"
