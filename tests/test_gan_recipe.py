"""The CPU GAN recipe (``--config cxr_cpu_gan``): fine-tuning the shipped PSNR model makes it sharper.

A short version of the recipe on real radiographs (../shared/nih-sample, skipped when absent):
the generator starts from the shipped model, D learns to tell HR from its output and stays
ahead of G at every logging interval, and on images of patients neither saw the EMA
generator's high-frequency energy ratio (1.0 = as much detail above the LR Nyquist frequency
as the original) rises while PSNR stays within 1 dB. The full
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
STEPS = 80
# Floors from measured runs of this test from the shipped model (AMD EPYC, the recipe's 128 px x 16
# patches): HF ratio 0.088 -> 0.106 at 40 steps, 0.153 at 80 (PSNR -0.17 dB), 0.184 at 120; with the
# adversarial and feature terms off, 0.089 at 40, so the rise is D's doing. A sharper PSNR model
# starts sharpening later (an earlier, weaker one reached 0.136-0.177 in 40 steps), hence 80 steps.
# At 96 px x 8, 60 steps cost 1.15 dB: the test keeps the recipe's patches and batch.
HF_GAIN_FLOOR = 0.02
# Every logging interval, not only the first: with lr_g 1e-4 G overtook D within 10-20 steps and
# D's interval means fell to 0.1-0.4 (benchmarks/RESULTS.md, GAN recipe section).
D_INTERVAL_FLOOR = 0.7


def test_short_gan_fine_tune_is_sharper_within_one_db(nih_sample_dir, tmp_path):
    cfg = load_config("cxr_cpu_gan", [f"data.images={nih_sample_dir}", f"train.out_dir={tmp_path / 'run'}",
                                      f"train.gan_steps={STEPS}", "data.val_crop_px=384", "data.val_max_images=6",
                                      "train.val_every=1000", "train.ckpt_every=1000", "train.log_every=10"])
    trainer = Trainer(cfg, CPU)
    before = dict(trainer.validate())  # the shipped PSNR model, on the held-out patients
    trainer.train()
    after = trainer.metrics
    trainer.close()
    per_step = [s["d_accuracy"] for s in trainer.loss_history]
    logged = read_scalars(tmp_path / "run")["train/d_accuracy_interval"]  # what tensorboard shows
    assert logged == pytest.approx({step: statistics.fmean(per_step[step - 10:step]) for step in range(10, STEPS + 1, 10)})
    assert min(logged.values()) > D_INTERVAL_FLOOR, logged  # D stays ahead of G for the whole phase
    assert after["hf_energy_ratio"] > before["hf_energy_ratio"] + HF_GAIN_FLOOR, (before, after)
    assert after["psnr_db"] > before["psnr_db"] - 1.0, (before, after)
