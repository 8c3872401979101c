"""The GAN phase is adversarial on X-rays: D learns, cannot cheat through BatchNorm, and its
features train G alone.

The discriminator we replaced sat at chance on radiographs (d_loss 0.6931 for a whole GAN phase):
raw [0, 1] intensities hid the one or two gray levels of detail that tell HR from SR, and with
BatchNorm on a mixed HR + SR batch it learned the batch layout instead. These tests fail on both.
"""
import pytest
import torch

from benchmarks.discriminator import measure
from conftest import tiny_config
from dist_train import gan_step
from dist_train.backends.ddp_backend import DDPBackend
from dist_train.config import load_config
from dist_train.distributed import DistEnv
from dist_train.gan_step import (ChanceWatch, StepOutcome, discriminator_accuracy, discriminator_step,
                                 generator_step, real_fake_logits)
from dist_train.losses import GeneratorLoss
from dist_train.models import PatchDiscriminator, build_discriminator
from dist_train.precision import Precision
from export.inputs import collect_inputs
from test_losses import generator_with_live_tail

CPU_DEVICE = torch.device("cpu")
CPU = DistEnv(0, 0, 1, CPU_DEVICE)
# Fresh-batch accuracy of tiny_cpu's D on NIH patches: 1.00 after 60 updates at 96 px and after
# 300 at 192 px (benchmarks/RESULTS.md); the raw-intensity D it replaced got 0.53-0.66. 40 updates
# at 64 px are what a unit test can afford: the floor leaves room for a slower start.
NIH_ACCURACY_FLOOR = 0.8


def _backend(*overrides: str) -> DDPBackend:
    cfg = load_config(None, ["model.features=4", "model.blocks=1", "model.d_features=4", *overrides])
    backend = DDPBackend(cfg, CPU, Precision("fp32", CPU_DEVICE))
    backend.wrap(generator_with_live_tail(), build_discriminator(cfg.model))
    return backend


def test_discriminator_learns_hr_from_bicubic_on_real_nih_patches(nih_sample_dir):
    """A short run of the real D update on real radiograph patches, judged on unseen patients."""
    paths = collect_inputs([nih_sample_dir])[:40]
    result = measure(paths, "tiny_cpu", ("loss.adversarial=ragan", "optim.lr_d=1e-4"), steps=40, patch_px=64,
                     batch=8, eval_batches=8, seed=0)
    assert result["fresh_images"] > 0 and result["train_images"] > result["fresh_images"]
    assert result["fresh_accuracy"] >= NIH_ACCURACY_FLOOR, result


def test_discriminator_never_sees_hr_and_sr_in_one_batch():
    """With BatchNorm in D, every forward pass of both updates holds HR only or SR only, so batch
    statistics cannot carry the label; and HR's logits do not depend on the SR beside them."""
    # without spectral normalisation, whose power iteration would move the logits between calls
    backend = _backend("model.d_batchnorm=true", "model.d_spectral_norm=false", "loss.adversarial=ragan",
                       "loss.perceptual=d_features", "loss.perceptual_weight=1.0")
    discriminator = backend.module("d")
    seen = []  # every batch that enters D, through forward or forward_with_features
    discriminator.stem.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    lr, hr = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 32, 32)
    sr = generator_step(backend, GeneratorLoss(backend.cfg.loss), lr, hr, True, StepOutcome())
    discriminator_step(backend, "ragan", sr, hr, StepOutcome())
    assert len(seen) == 4  # G step: SR, HR (no grad); D step: HR, SR
    assert all(torch.equal(batch, hr) or torch.equal(batch, sr) for batch in seen)

    real_a, _ = real_fake_logits(discriminator, hr, sr)
    real_b, _ = real_fake_logits(discriminator, hr, torch.zeros_like(sr))
    torch.testing.assert_close(real_a, real_b)


def test_feature_matching_trains_the_generator_and_leaves_the_discriminator_alone():
    """loss.perceptual=d_features alone: every G parameter moves in G's step, no D parameter
    moves or holds a gradient (D is the feature network, frozen while G trains)."""
    backend = _backend("loss.perceptual=d_features", "loss.perceptual_weight=1.0", "loss.pixel_weight=0",
                       "loss.adversarial_weight=0", "optim.lr_g=0.01")
    generator, discriminator = backend.module("g"), backend.module("d")
    g_before = {name: p.detach().clone() for name, p in generator.named_parameters()}
    d_before = {name: p.detach().clone() for name, p in discriminator.named_parameters()}
    outcome = StepOutcome()
    generator_step(backend, GeneratorLoss(backend.cfg.loss), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 32, 32), True,
                   outcome)
    assert outcome.losses["g_perceptual"] > 0 and outcome.losses["g_total"] == pytest.approx(
        outcome.losses["g_perceptual"] + outcome.losses["g_pixel"])
    assert [name for name, p in generator.named_parameters() if torch.equal(p, g_before[name])] == []
    for name, p in discriminator.named_parameters():
        assert torch.equal(p, d_before[name]) and p.grad is None and p.requires_grad, name


def test_feature_matching_needs_no_weights_and_its_gradient_reaches_every_generator_layer():
    """The term itself (not the step): a gradient in every G parameter from D's activations."""
    cfg = load_config(None, ["loss.perceptual=d_features", "loss.perceptual_weight=1.0", "loss.pixel_weight=0",
                             "loss.adversarial_weight=0"])
    generator, discriminator = generator_with_live_tail(), PatchDiscriminator(features=4)
    objective = GeneratorLoss(cfg.loss)  # no feature network given: none is needed
    hr = torch.rand(2, 1, 32, 32)
    sr = generator(torch.rand(2, 1, 8, 8))
    discriminator.requires_grad_(False)
    fake_logits, fake_features = discriminator.forward_with_features(sr)
    with torch.no_grad():
        real_logits, real_features = discriminator.forward_with_features(hr)
    total, terms = objective(sr, hr, fake_logits, real_logits, fake_features, real_features)
    total.backward()
    assert set(terms) == {"pixel", "perceptual"} and terms["perceptual"] > 0
    assert [n for n, p in generator.named_parameters() if p.grad is None or not p.grad.abs().sum()] == []


def test_quantized_stem_passes_the_gradient_to_sr():
    """D sees 8-bit levels, but rounding must not cut G off from the adversarial gradient."""
    discriminator = PatchDiscriminator(features=4)
    sr = torch.rand(2, 1, 32, 32, requires_grad=True)
    discriminator(sr).sum().backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_discriminator_accuracy_is_relative_and_half_at_chance():
    real, fake = torch.tensor([[3.0], [2.0]]), torch.tensor([[-1.0], [0.0]])
    assert discriminator_accuracy(real, fake) == 1.0
    assert discriminator_accuracy(fake, real) == 0.0
    same = torch.tensor([[1.0], [1.0]])
    assert discriminator_accuracy(same, same) == 0.0
    # shifting every logit changes nothing: the RaGAN loss has no fixed threshold either
    assert discriminator_accuracy(real + 10, fake + 10) == 1.0
    assert discriminator_accuracy(torch.tensor([[1.0], [-1.0]]), torch.tensor([[0.5], [-0.5]])) == 0.5


def test_chance_watch_warns_after_the_configured_intervals_and_resets():
    watch = ChanceWatch(3)
    assert [watch.update([0.5, 0.55]) for _ in range(2)] == [None, None]
    assert "3 logging intervals" in watch.update([0.52])
    watch = ChanceWatch(2)
    assert watch.update([0.5]) is None and watch.update([0.9]) is None and watch.update([0.5]) is None
    assert ChanceWatch(0).update([0.5]) is None and ChanceWatch(1).update([]) is None


def test_trainer_logs_d_accuracy_and_gap_and_warns_when_d_is_at_chance(synth_images, tmp_path, capfd, monkeypatch):
    """The diagnostics reach tensorboard and the log. Every interval counts as chance here (the
    threshold is raised above 1) so that the warning's wiring is tested, not D's luck."""
    from benchmarks.train_bench import read_scalars
    from dist_train.trainer import Trainer

    monkeypatch.setattr(gan_step, "CHANCE_ACCURACY", 1.01)
    cfg = tiny_config(tmp_path / "run", synth_images, "train.pretrain_steps=1", "train.gan_steps=4",
                      "train.log_every=1", "train.val_every=100", "train.ckpt_every=100", "data.patch_px=32",
                      "data.batch_size=2", "data.val_crop_px=64", "data.val_max_images=1",
                      "optim.d_chance_intervals=2")
    trainer = Trainer(cfg, CPU)
    trainer.train()
    trainer.close()
    scalars = read_scalars(tmp_path / "run")
    assert sorted(scalars["train/d_accuracy"]) == [2, 3, 4, 5]
    assert all(0.0 <= v <= 1.0 for v in scalars["train/d_accuracy"].values())
    assert set(scalars["train/d_logit_gap"]) == {2, 3, 4, 5}
    assert scalars["train/d_accuracy_interval"] == scalars["train/d_accuracy"]  # intervals of one step
    log = capfd.readouterr().err
    assert log.count("discriminator has been at chance") == 2  # after GAN intervals 2 and 4
