"""The generators' contract (SRResNet and CompactSR alike): 4x (2x, 8x) shapes for any input
size, bicubic before training (also under bf16 autocast), a gradient for every parameter,
TorchScript equal to eager, and CompactSR within its cost budget."""
import pytest
import torch

from dist_train.config import ModelConfig
from dist_train.degradation import bicubic_upsample
from dist_train.models import GENERATOR_ARCHS, PatchDiscriminator, SRResNet, build_generator
from dist_train.models.cost import gmac_per_input
from export.jit_warnings import quiet_jit_deprecation

# CompactSR at the CPU recipe's size must stay within this (the efficient-generator budget,
# about half of a 6-block, 32-feature SRResNet-style network with two x2 pixel-shuffle stages).
COMPACT_GMAC_BUDGET = 10.0


def tiny(arch: str, scale: int = 4, randomise_tail: bool = False) -> torch.nn.Module:
    generator = build_generator(ModelConfig(arch=arch, scale=scale, features=8, blocks=2))
    if randomise_tail:  # the zero tail would make every other comparison trivially bicubic
        torch.nn.init.normal_(generator.tail.weight, std=0.01)
    return generator


@pytest.mark.parametrize("arch", GENERATOR_ARCHS)
@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("size", [(8, 8), (13, 17), (32, 21)])
def test_output_shape_for_each_scale_and_odd_sizes(arch, scale, size):
    """A wrong upsampler count or padding shows up as a wrong shape on odd sizes."""
    out = tiny(arch, scale)(torch.rand(2, 1, *size))
    assert out.shape == (2, 1, size[0] * scale, size[1] * scale)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("batchnorm", [False, True])
def test_untrained_srresnet_equals_bicubic(batchnorm):
    """The zero-initialised last layer makes training start from the bicubic baseline exactly."""
    generator = SRResNet(scale=4, features=8, blocks=2, batchnorm=batchnorm).eval()
    lr = torch.rand(3, 1, 20, 24)
    torch.testing.assert_close(generator(lr), bicubic_upsample(lr, 4), rtol=0, atol=0)


@pytest.mark.parametrize("arch", GENERATOR_ARCHS)
def test_untrained_generator_equals_float32_bicubic_under_bf16_autocast(arch):
    """The bicubic base is added in float32: a bf16 base rounds bright pixels by up to one gray
    level (2^-8 relative), the size of the detail the generator is meant to add."""
    generator = tiny(arch).eval()
    lr = torch.rand(2, 1, 20, 24) * 0.5 + 0.5  # bright, where bf16's step is largest
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = generator(lr)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, bicubic_upsample(lr, 4), rtol=0, atol=0)


@pytest.mark.parametrize("arch", GENERATOR_ARCHS)
def test_every_parameter_gets_a_gradient(arch):
    """A layer left out of the graph (or a detached skip) would silently never train."""
    generator = tiny(arch, randomise_tail=True)
    generator(torch.rand(2, 1, 12, 12)).square().mean().backward()
    for name, param in generator.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_without_global_residual_the_output_is_learned_from_scratch():
    """The option really removes the bicubic skip (its output is then far from bicubic)."""
    generator = SRResNet(scale=4, features=8, blocks=1, global_residual=False)
    lr = torch.rand(1, 1, 16, 16)
    assert (generator(lr) - bicubic_upsample(lr, 4)).abs().mean() > 1e-3


@pytest.mark.parametrize("arch", GENERATOR_ARCHS)
def test_generator_scripts_and_matches_eager(arch):
    """Export relies on torch.jit.script; a non-scriptable construct would break it."""
    generator = tiny(arch, randomise_tail=True).eval()
    with quiet_jit_deprecation():
        scripted = torch.jit.script(generator)
    lr = torch.rand(2, 1, 11, 9)
    torch.testing.assert_close(scripted(lr), generator(lr))


def test_compact_generator_of_the_cpu_recipe_is_within_its_cost_budget():
    """The CPU recipe's generator: at most 10 GMAC per 256 x 256 input and less than half the
    SRResNet of the same width and depth (whose convolutions at 2x and 4x resolution dominate)."""
    from dist_train.config import load_config

    model = load_config("cxr_cpu", []).model
    compact = gmac_per_input(build_generator(model))
    srresnet = gmac_per_input(SRResNet(scale=4, features=model.features, blocks=model.blocks))
    assert compact <= COMPACT_GMAC_BUDGET
    assert compact < srresnet / 2


@pytest.mark.parametrize("patch", [32, 96, 128])
def test_discriminator_returns_one_logit_per_image_for_any_patch(patch):
    discriminator = PatchDiscriminator(features=4, batchnorm=True)
    logits = discriminator(torch.rand(3, 1, patch, patch))
    assert logits.shape == (3, 1)
    # raw logits: the losses apply BCE-with-logits, a sigmoid here would squash them twice
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in discriminator.modules())


def test_patch_head_scores_every_16_px_cell_and_trains_through_the_gan_losses():
    """``model.d_head=patch`` (PatchGAN): one logit per 16 x 16 px cell, and the losses, the
    relative accuracy and G's gradient work on those maps as on one logit per patch."""
    from dist_train.gan_step import discriminator_accuracy
    from dist_train.losses import discriminator_loss, generator_adversarial_loss

    discriminator = PatchDiscriminator(features=4, head="patch")
    hr, sr = torch.rand(2, 1, 64, 48), torch.rand(2, 1, 64, 48, requires_grad=True)
    real_logits, fake_logits = discriminator(hr), discriminator(sr)
    assert real_logits.shape == (2, 1, 4, 3)
    assert 0.0 <= float(discriminator_accuracy(real_logits, fake_logits)) <= 1.0
    assert torch.isfinite(discriminator_loss(real_logits, fake_logits, "ragan"))
    generator_adversarial_loss(fake_logits, real_logits, "ragan").backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pooled, patch"):
        PatchDiscriminator(features=4, head="pixel")
