"""The SRGAN networks and their builders from config: two generators (``model.arch``) and D."""
from torch import nn

from dist_train.models.compact import CompactSR
from dist_train.models.discriminator import DISCRIMINATOR_HEADS, PatchDiscriminator
from dist_train.models.generator import SRResNet

GENERATOR_ARCHS = ("srresnet", "compact")


def build_generator(model_cfg) -> nn.Module:
    """The generator described by a ``ModelConfig``: SRResNet or the CPU-efficient CompactSR."""
    if model_cfg.arch == "compact":
        return CompactSR(scale=model_cfg.scale, features=model_cfg.features, blocks=model_cfg.blocks)
    return SRResNet(scale=model_cfg.scale, features=model_cfg.features, blocks=model_cfg.blocks,
                    batchnorm=model_cfg.batchnorm, global_residual=model_cfg.global_residual)


def build_discriminator(model_cfg) -> PatchDiscriminator:
    """The discriminator described by a ``ModelConfig``."""
    return PatchDiscriminator(features=model_cfg.d_features, batchnorm=model_cfg.d_batchnorm,
                              spectral=model_cfg.d_spectral_norm, standardise=model_cfg.d_standardise,
                              high_pass=model_cfg.d_high_pass, quantize=model_cfg.d_quantize,
                              head=model_cfg.d_head)


__all__ = ["CompactSR", "SRResNet", "PatchDiscriminator", "DISCRIMINATOR_HEADS", "GENERATOR_ARCHS",
           "build_generator", "build_discriminator"]
