"""The generator's contract: 4x (2x, 8x) shapes for any input size, and bicubic before training."""
import pytest
import torch

from dist_train.degradation import bicubic_upsample
from dist_train.models import PatchDiscriminator, SRResNet
from export.jit_warnings import quiet_jit_deprecation


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("size", [(8, 8), (13, 17), (32, 21)])
def test_output_shape_for_each_scale_and_odd_sizes(scale, size):
    """A wrong upsampler count or padding shows up as a wrong shape on odd sizes."""
    generator = SRResNet(scale=scale, features=8, blocks=1)
    out = generator(torch.rand(2, 1, *size))
    assert out.shape == (2, 1, size[0] * scale, size[1] * scale)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("batchnorm", [False, True])
def test_untrained_generator_equals_bicubic(batchnorm):
    """The zero-initialised last layer makes training start from the bicubic baseline exactly."""
    generator = SRResNet(scale=4, features=8, blocks=2, batchnorm=batchnorm).eval()
    lr = torch.rand(3, 1, 20, 24)
    torch.testing.assert_close(generator(lr), bicubic_upsample(lr, 4), rtol=0, atol=0)


def test_without_global_residual_the_output_is_learned_from_scratch():
    """The option really removes the bicubic skip (its output is then far from bicubic)."""
    generator = SRResNet(scale=4, features=8, blocks=1, global_residual=False)
    lr = torch.rand(1, 1, 16, 16)
    assert (generator(lr) - bicubic_upsample(lr, 4)).abs().mean() > 1e-3


def test_generator_scripts_and_matches_eager():
    """Export relies on torch.jit.script; a non-scriptable construct would break it."""
    generator = SRResNet(scale=4, features=8, blocks=1).eval()
    torch.nn.init.normal_(generator.tail.weight, std=0.01)
    with quiet_jit_deprecation():
        scripted = torch.jit.script(generator)
    lr = torch.rand(2, 1, 11, 9)
    torch.testing.assert_close(scripted(lr), generator(lr))


@pytest.mark.parametrize("patch", [32, 96, 128])
def test_discriminator_returns_one_logit_per_image_for_any_patch(patch):
    discriminator = PatchDiscriminator(features=4, batchnorm=True)
    logits = discriminator(torch.rand(3, 1, patch, patch))
    assert logits.shape == (3, 1)
    # raw logits: the losses apply BCE-with-logits, a sigmoid here would squash them twice
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in discriminator.modules())
