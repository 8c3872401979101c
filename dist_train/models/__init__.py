"""The two SRGAN networks and their builders from config."""
from dist_train.models.discriminator import PatchDiscriminator
from dist_train.models.generator import SRResNet


def build_generator(model_cfg) -> SRResNet:
    """The generator described by a ``ModelConfig``."""
    return SRResNet(scale=model_cfg.scale, features=model_cfg.features, blocks=model_cfg.blocks,
                    batchnorm=model_cfg.batchnorm, global_residual=model_cfg.global_residual)


def build_discriminator(model_cfg) -> PatchDiscriminator:
    """The discriminator described by a ``ModelConfig``."""
    return PatchDiscriminator(features=model_cfg.d_features, batchnorm=model_cfg.d_batchnorm,
                              spectral=model_cfg.d_spectral_norm, standardise=model_cfg.d_standardise,
                              high_pass=model_cfg.d_high_pass, quantize=model_cfg.d_quantize)


__all__ = ["SRResNet", "PatchDiscriminator", "build_generator", "build_discriminator"]
