"""The trainer's bookkeeping around skipped updates and resumes: EMA, learning rates, logs.

Each test follows something a user would see: an EMA generator that falls behind G when only
D's loss was non-finite, a learning-rate schedule that slips by one step per skipped update (and
so differs between backends and runs), and tensorboard curves and metrics.csv rows that repeat
the steps between the last checkpoint and a crash after a resume.
"""
from __future__ import annotations

import csv
import shutil
import sys
import time

import pytest
import torch

from conftest import tiny_config
from dist_train import gan_step
from dist_train.checkpoint import CheckpointError, complete_checkpoints, latest_checkpoint
from dist_train.distributed import DistEnv
from dist_train.optim import lr_factor
from dist_train.trainer import Trainer

CPU = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def _config(out_dir, images, *overrides: str):
    return tiny_config(out_dir, images, "data.patch_px=32", "data.batch_size=2", "data.val_crop_px=64",
                       "data.val_max_images=1", "train.log_every=1", *overrides)


class _NaNGeneratorLoss:
    """The real generator objective with a NaN total on chosen (0-based) steps, as an fp16
    overflow would give it."""

    def __init__(self, trainer: Trainer, steps: set[int]):
        self.objective, self.trainer, self.steps = trainer.objective, trainer, steps

    def __getattr__(self, name):
        return getattr(self.objective, name)

    def __call__(self, *args, **kwargs):
        total, terms = self.objective(*args, **kwargs)
        if self.trainer.step in self.steps:
            total = total * float("nan")
        return total, terms


def _nan_discriminator_loss(monkeypatch, trainers: list[Trainer], steps: set[int]) -> None:
    """D's real loss, NaN on chosen steps of whichever trainer in ``trainers`` is the newest."""
    real = gan_step.discriminator_loss

    def poisoned(real_logits, fake_logits, kind):
        loss = real(real_logits, fake_logits, kind)
        return loss * float("nan") if trainers[-1].step in steps else loss
    monkeypatch.setattr(gan_step, "discriminator_loss", poisoned)


def test_ema_follows_every_generator_update_when_only_d_was_non_finite(synth_images, tmp_path, monkeypatch):
    """A NaN discriminator loss skips D's update only: G stepped, so its EMA (the weights that get
    validated and exported) must take that step too, and the outcome must say which network
    stepped."""
    cfg = _config(tmp_path / "run", synth_images, "train.pretrain_steps=1", "train.gan_steps=3",
                  "train.val_every=1000", "train.ckpt_every=1000")
    trainer = Trainer(cfg, CPU)
    _nan_discriminator_loss(monkeypatch, [trainer], {2})
    trainer.train()
    assert trainer.bad_steps["total"] == 1  # the D skip still counts as a bad step
    assert trainer.ema.updates == 4  # one per generator update: steps 0..3 all updated G

    trainer.step = 2
    lr_batch, hr_batch = trainer.train_batches.next_batch()
    d_before = [p.detach().clone() for p in trainer.backend.module("d").parameters()]
    outcome = gan_step.train_step(trainer.backend, trainer.objective, lr_batch, hr_batch, gan_phase=True)
    psnr_outcome = gan_step.train_step(trainer.backend, trainer.objective, lr_batch, hr_batch, gan_phase=False)
    trainer.close()
    assert outcome.stepped == {"g": True, "d": False} and outcome.bad
    assert all(torch.equal(b, p) for b, p in zip(d_before, trainer.backend.module("d").parameters()))
    assert psnr_outcome.stepped == {"g": True} and not psnr_outcome.bad  # D is not part of a PSNR step


def _lr_schedule_overrides() -> tuple[str, ...]:
    # Cosine moves every step, so a schedule one step behind shows at once; D's span is the GAN phase.
    return ("optim.scheduler=cosine", "train.pretrain_steps=3", "train.gan_steps=5", "train.val_every=1000",
            "train.ckpt_every=4", "train.keep_ckpts=3")


def _logged_lrs(run_dir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    return {net: {e.step: e.value for e in events.Scalars(f"train/lr_{net}")} for net in ("g", "d")}


def _expected_lrs(cfg) -> dict[str, dict[int, float]]:
    """The scalar logged at tensorboard step s is the rate of the update made at step s - 1."""
    base = {"g": cfg.optim.lr_g, "d": cfg.optim.lr_d}
    return {net: {s: pytest.approx(base[net] * lr_factor(cfg, net, s - 1), rel=1e-6)
                  for s in range(1, cfg.train.total_steps + 1)} for net in ("g", "d")}


def test_learning_rates_follow_the_global_step_through_skipped_steps_and_a_resume(synth_images, tmp_path,
                                                                                   monkeypatch):
    """Skipped updates (G's at steps 1 and 5, D's at step 4) must not shift either schedule, and a
    resume from the step-4 checkpoint must continue it: the rates equal those of a run without
    a skip and the schedule's formula at every step."""
    clean = Trainer(_config(tmp_path / "clean", synth_images, *_lr_schedule_overrides()), CPU)
    clean.train()
    clean.close()

    cfg = _config(tmp_path / "faulty", synth_images, *_lr_schedule_overrides())
    trainers = [Trainer(cfg, CPU)]
    _nan_discriminator_loss(monkeypatch, trainers, {4})
    trainers[0].objective = _NaNGeneratorLoss(trainers[0], {1, 5})
    trainers[0].train()
    trainers[0].close()
    assert trainers[0].bad_steps["total"] == 3
    uninterrupted = _logged_lrs(tmp_path / "faulty")

    resumed = Trainer(cfg, CPU)
    trainers.append(resumed)
    resumed.objective = _NaNGeneratorLoss(resumed, {1, 5})
    resumed.resume([p for p in complete_checkpoints(tmp_path / "faulty") if p.name == "step_00000004"][0])
    resumed.train()
    resumed.close()

    expected, reference = _expected_lrs(cfg), _logged_lrs(tmp_path / "clean")
    for net in ("g", "d"):
        assert uninterrupted[net] == reference[net], net
        assert uninterrupted[net] == expected[net], net
        assert _logged_lrs(tmp_path / "faulty")[net] == expected[net], f"{net} after the resume"
    assert len(set(reference["g"].values())) == cfg.train.total_steps  # the schedule really moves

    # The schedule lives in the step alone: a network state carrying more (or less) is refused.
    folder = latest_checkpoint(tmp_path / "faulty")
    state = torch.load(folder / "networks.pt", weights_only=False)
    state["g"]["scheduler"] = {"last_epoch": 8}
    torch.save(state, folder / "networks.pt")
    refused = Trainer(cfg, CPU)
    with pytest.raises(CheckpointError, match=r"network 'g' has missing keys \[\], unknown keys \['scheduler'\]"):
        refused.resume(folder)
    refused.close()


def test_resume_forgets_the_logs_written_after_its_checkpoint(synth_images, tmp_path):
    """A crash after step 8's logs but before its checkpoint, then a resume from step 4: tensorboard
    and metrics.csv must show each step once (the resumed values), and keep step 4's own entries."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cfg = _config(run, synth_images, "train.pretrain_steps=4", "train.gan_steps=4", "train.val_every=2",
                  "train.ckpt_every=4", "train.keep_ckpts=3")
    first = Trainer(cfg, CPU)
    first.train()
    first.close()
    shutil.rmtree(latest_checkpoint(run))  # as if killed while writing step 8's checkpoint
    assert latest_checkpoint(run).name == "step_00000004"
    time.sleep(1.0)  # event files are ordered by their creation second, as a real restart would be

    resumed = Trainer(cfg, CPU)
    assert resumed.resume()
    with torch.no_grad():  # make the resumed run's figures distinguishable from the first run's
        resumed.ema.module.tail.weight.add_(0.01)
    resumed.train()
    resumed.close()

    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [2, 4, 6, 8]
    assert first.metrics["psnr_db"] != resumed.metrics["psnr_db"]
    assert float(rows[3]["psnr_db"]) == pytest.approx(resumed.metrics["psnr_db"], abs=1e-9)
    assert not list(run.glob(".*.tmp*"))  # rewritten through a temporary file that is gone

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    psnr = {e.step: e.value for e in events.Scalars("val/psnr_db")}
    assert sorted(psnr) == [2, 4, 6, 8]
    assert [e.step for e in events.Scalars("val/psnr_db")] == [2, 4, 6, 8]
    assert psnr[8] == pytest.approx(resumed.metrics["psnr_db"], abs=1e-4)
    assert [e.step for e in events.Scalars("train/g_total")] == list(range(1, 9))
    assert [e.step for e in events.Images("val/lr_bicubic_sr_hr")] == [2, 4, 6, 8]


@pytest.mark.slow
def test_deepspeed_and_ddp_schedules_agree_through_skipped_steps(tmp_path):
    """The same run (one process, NaN generator losses at steps 1 and 4) under both backends logs
    the same learning rates, those of the global step: DeepSpeed's engine steps its scheduler only
    on applied updates, so the schedule must not be left to it."""
    from benchmarks.train_bench import read_scalars
    from dist_train.config import load_config
    from tests.dist_helpers import process_env, run, tiny_args, write_tiny_images

    images = write_tiny_images(tmp_path / "images")
    schedule = ("optim.scheduler=cosine", "train.pretrain_steps=2", "train.gan_steps=4", "train.ckpt_every=1000",
                "train.precision=bf16")
    logged = {}
    for backend in ("ddp", "deepspeed"):
        args = tiny_args(images, tmp_path / backend, *schedule, f"dist.backend={backend}")
        run([sys.executable, "tests/workers/fault_train.py", *args], tmp_path / f"{backend}.txt",
            env=process_env(CXR_SR_TEST_NAN="0:1,4"))
        logged[backend] = read_scalars(tmp_path / backend)
        assert logged[backend]["train/bad_steps"] == {1: 1.0, 4: 2.0}
    cfg = load_config("tiny_cpu", list(schedule))
    expected = _expected_lrs(cfg)
    for net in ("g", "d"):
        assert logged["deepspeed"][f"train/lr_{net}"] == logged["ddp"][f"train/lr_{net}"], net
        assert logged["ddp"][f"train/lr_{net}"] == expected[net], net
