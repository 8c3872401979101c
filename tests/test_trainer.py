"""The single-process trainer: it learns, it resumes exactly, it logs, and it fails clearly."""
import csv
import subprocess
import sys

import pytest
import torch

from conftest import tiny_config
from dist_train.checkpoint import CheckpointError, complete_checkpoints, latest_checkpoint, load_file, load_generator
from dist_train.distributed import DistEnv
from dist_train.losses import pixel_loss
from dist_train.trainer import Trainer

CPU = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def test_short_run_lowers_pixel_loss_on_real_nih_patches(nih_sample_dir, tmp_path):
    """Thirty steps on real X-ray patches must cut the pixel loss on patches fixed beforehand.

    Without the bicubic skip the generator starts far from the answer, so a working optimisation
    path (loss -> backward -> optimizer -> weights) shows within seconds. With the skip it starts
    *at* bicubic, which on smooth 1024 px radiographs takes thousands of steps to beat: that is
    what benchmarks measure, not a unit test.
    """
    cfg = tiny_config(tmp_path / "run", nih_sample_dir, "train.pretrain_steps=30", "train.gan_steps=0",
                      "train.val_every=1000", "train.ckpt_every=1000", "data.val_count=2",
                      "data.val_max_images=1", "data.batch_size=4", "data.patch_px=64",
                      "model.global_residual=false", "optim.lr_g=0.002")
    trainer = Trainer(cfg, CPU)
    start = trainer.train_batches.state_dict()
    probe = [trainer.train_batches.next_batch() for _ in range(3)]  # fixed patches, seen before training
    trainer.train_batches.load_state_dict(start)

    def probe_loss() -> float:
        with torch.no_grad():
            return sum(pixel_loss(trainer.backend.module("g")(lr), hr).item() for lr, hr in probe) / len(probe)

    before = probe_loss()
    trainer.train()
    after = probe_loss()
    trainer.close()
    assert after < 0.5 * before, (before, after)


def _trajectory_config(out_dir, images):
    return tiny_config(out_dir, images, "train.pretrain_steps=6", "train.gan_steps=6", "train.val_every=4",
                       "train.ckpt_every=4", "train.keep_ckpts=3", "data.patch_px=32", "data.batch_size=4",
                       "data.val_crop_px=64", "data.val_max_images=2")


def test_resume_reproduces_the_uninterrupted_losses_exactly(synth_images, tmp_path):
    """Stop after the step-8 checkpoint (in the GAN phase), resume, and get bit-identical losses."""
    full = Trainer(_trajectory_config(tmp_path / "full", synth_images), CPU)
    full.train()
    full.close()
    step8 = [p for p in complete_checkpoints(tmp_path / "full") if p.name.endswith("00000008")][0]

    resumed = Trainer(_trajectory_config(tmp_path / "resumed", synth_images), CPU)
    resumed.resume(step8)
    assert resumed.step == 8
    resumed.train()
    resumed.close()
    assert list(resumed.loss_history) == list(full.loss_history)[8:]
    assert "d_loss" in resumed.loss_history[0]  # the resumed part is in the GAN phase
    for name, value in load_generator(tmp_path / "full")[0].state_dict().items():
        torch.testing.assert_close(load_generator(tmp_path / "resumed")[0].state_dict()[name], value,
                                   rtol=0, atol=0)


def test_bicubic_baseline_measured_once_stays_the_full_protocol_figure(synth_images, tmp_path):
    """The trainer measures bicubic at the first validation only (it cannot change); a later
    validation must still report exactly what a full evaluation of the same images gives, and the
    model's own figures must be measured afresh (they move as it trains)."""
    from dist_train.metrics import MetricAccumulator, evaluate

    trainer = Trainer(_trajectory_config(tmp_path / "run", synth_images), CPU)
    first = dict(trainer.validate())
    with torch.no_grad():
        trainer.ema.module.tail.weight.add_(0.01)  # a different model, the same images
    later = dict(trainer.validate())
    full = MetricAccumulator()
    with torch.no_grad():
        for lr, hr in trainer.val_batches:
            full.add(evaluate(trainer.ema.module(lr), hr, lr, 4))
    expected = full.means(full.as_tensor())
    trainer.close()
    assert list(later) == list(first)  # the metrics CSV keeps its columns
    assert later["bicubic_psnr_db"] == first["bicubic_psnr_db"] == pytest.approx(expected["bicubic_psnr_db"], abs=1e-9)
    assert later["bicubic_ssim"] == pytest.approx(expected["bicubic_ssim"], abs=1e-9)
    assert later["psnr_db"] == pytest.approx(expected["psnr_db"], abs=1e-9) and later["psnr_db"] != first["psnr_db"]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(synth_images, tmp_path, precision):
    """bf16 autocast, and fp16 with a grad scaler per network, run the same loop on the CPU."""
    cfg = tiny_config(tmp_path / precision, synth_images, f"train.precision={precision}", "train.pretrain_steps=3",
                      "train.gan_steps=3", "train.val_every=6", "train.ckpt_every=6", "data.patch_px=32",
                      "data.batch_size=2", "data.val_crop_px=64", "data.val_max_images=1")
    trainer = Trainer(cfg, CPU)
    trainer.train()
    trainer.close()
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in trainer.loss_history)
    assert trainer.metrics["psnr_db"] > 20
    assert (trainer.backend.scalers["g"] is not None) == (precision == "fp16")


def test_cli_trains_logs_checkpoints_and_resumes(synth_images, tmp_path):
    """What the README promises: `cxr-sr train` writes tensorboard events and checkpoints, and resumes."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "cli"
    common = [sys.executable, "-m", "dist_train", "--config", "tiny_cpu", f"data.images={synth_images}",
              f"train.out_dir={run}", "data.patch_px=32", "data.batch_size=2", "data.val_crop_px=64",
              "data.val_max_images=2", "train.val_every=4", "train.ckpt_every=4", "train.log_every=2",
              "train.pretrain_steps=4"]
    first = subprocess.run(common + ["train.gan_steps=0"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert latest_checkpoint(run).name == "step_00000004"
    second = subprocess.run(common + ["train.gan_steps=4", "--resume"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stderr and "step_00000004" in second.stderr
    assert latest_checkpoint(run).name == "step_00000008"
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    tags = events.Tags()
    assert {"train/g_pixel", "train/d_loss", "val/psnr_db", "val/bicubic_psnr_db"} <= set(tags["scalars"])
    assert "val/lr_bicubic_sr_hr" in tags["images"]
    assert [e.step for e in events.Scalars("val/psnr_db")] == [4, 8]
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").read_text().count("\n") == 3
    # each row is labelled with the phase of the update that made its weights: step 4 ends the PSNR phase
    with open(run / "metrics.csv", newline="") as handle:
        assert [(row["step"], row["phase"]) for row in csv.DictReader(handle)] == [("4", "psnr"), ("8", "gan")]


def test_cli_missing_vgg_weights_is_one_clear_line(synth_images, tmp_path):
    result = subprocess.run([sys.executable, "-m", "dist_train", "--config", "tiny_cpu",
                             f"data.images={synth_images}", f"train.out_dir={tmp_path}",
                             "loss.perceptual_weight=1.0", f"loss.perceptual_weights={tmp_path}/vgg19.pth"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path}/vgg19.pth" in lines[0]


def test_partial_checkpoint_is_never_taken_and_bad_files_are_named(synth_images, tmp_path):
    """A kill mid-write leaves a .partial folder: resume must skip it; damaged files fail by name."""
    run = tmp_path / "run"
    trainer = Trainer(_trajectory_config(run, synth_images), CPU)
    trainer.train()
    trainer.close()
    newest = latest_checkpoint(run)
    (run / "checkpoints" / "step_00000099.partial").mkdir()
    assert latest_checkpoint(run) == newest
    (newest / "trainer.pt").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="trainer.pt: not a readable checkpoint"):
        load_file(newest / "trainer.pt")
    torch.save({"step": 1}, newest / "trainer.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        Trainer(_trajectory_config(tmp_path / "other", synth_images), CPU).resume(newest)


def test_mid_epoch_position_is_refused_under_another_backend_or_world():
    """A saved (epoch, batch) names other samples under another backend, world size or batch size."""
    from dist_train.data.positioned import check_resumable

    state = {"epoch": 1, "batch": 3, "backend": "folder", "world_size": 2, "batch_size": 4}
    check_resumable(state, "folder", 2, 4)
    for backend, world_size, batch_size in (("torch", 2, 4), ("folder", 1, 4), ("folder", 2, 8)):
        with pytest.raises(CheckpointError, match="cannot resume mid-epoch"):
            check_resumable(state, backend, world_size, batch_size)
    check_resumable(state | {"batch": 0}, "torch", 1, 8)  # an epoch boundary means the same everywhere
