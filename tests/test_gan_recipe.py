"""The CPU GAN recipe (``--config cxr_cpu_gan``): fine-tuning the shipped PSNR model makes it sharper.

A short version of the recipe on real radiographs (../shared/nih-sample, skipped when absent):
the generator starts from the shipped model, D learns to tell HR from its output, and on images
of patients neither saw the EMA generator's high-frequency energy ratio (1.0 = as much detail
above the LR Nyquist frequency as the original) rises while PSNR stays within 1 dB. The full
recipe and its side-by-side figures are benchmarks/gan_vs_psnr.sh (benchmarks/RESULTS.md).
"""
import statistics

import pytest
import torch

from benchmarks.train_bench import read_scalars
from dist_train.config import load_config
from dist_train.distributed import DistEnv
from dist_train.trainer import Trainer

pytestmark = pytest.mark.slow
CPU = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
STEPS = 60
# Floors from measured runs (AMD EPYC, fp32): HF ratio 0.090 -> 0.180 (seed 0) and -> 0.135
# (seed 1), PSNR -0.32 and -0.25 dB; D's accuracy in the first 10 steps 0.86 and 0.94. Later
# intervals are not held to a floor: D loses ground as G adapts (0.32-0.66 at steps 30-60 for
# seed 1, 0.63-0.66 for seed 0; benchmarks/RESULTS.md, GAN recipe section).
HF_GAIN_FLOOR = 0.02
D_FIRST_INTERVAL_FLOOR = 0.7


def test_short_gan_fine_tune_is_sharper_within_one_db(nih_sample_dir, tmp_path):
    cfg = load_config("cxr_cpu_gan", [f"data.images={nih_sample_dir}", f"train.out_dir={tmp_path / 'run'}",
                                      f"train.gan_steps={STEPS}", "data.patch_px=96", "data.batch_size=8",
                                      "data.val_crop_px=384", "data.val_max_images=6", "train.val_every=1000",
                                      "train.ckpt_every=1000", "train.log_every=10"])
    trainer = Trainer(cfg, CPU)
    before = dict(trainer.validate())  # the shipped PSNR model, on the held-out patients
    trainer.train()
    after = trainer.metrics
    trainer.close()
    per_step = [s["d_accuracy"] for s in trainer.loss_history]
    logged = read_scalars(tmp_path / "run")["train/d_accuracy_interval"]  # what tensorboard shows
    assert logged == pytest.approx({step: statistics.fmean(per_step[step - 10:step]) for step in range(10, STEPS + 1, 10)})
    assert logged[10] > D_FIRST_INTERVAL_FLOOR, logged  # D learns to tell the PSNR model's output from HR
    assert after["hf_energy_ratio"] > before["hf_energy_ratio"] + HF_GAIN_FLOOR, (before, after)
    assert after["psnr_db"] > before["psnr_db"] - 1.0, (before, after)
