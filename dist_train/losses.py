"""SRGAN loss terms, each weighted from ``LossConfig`` and none computed under no_grad.

The research code computed its perceptual and adversarial terms under ``torch.no_grad()``, so
they never reached the generator; ``tests/test_losses.py`` checks every term on its own does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dist_train.config import LossConfig


def uses_vgg(cfg: LossConfig) -> bool:
    """True when the config's perceptual term needs the VGG19 feature network."""
    return cfg.perceptual == "vgg" and cfg.perceptual_weight > 0


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """L1 or MSE between SR and HR."""
    if kind == "l1":
        return F.l1_loss(sr, hr)
    return F.mse_loss(sr, hr)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV)."""
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    return dx + dy


def _bce(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def generator_adversarial_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor | None,
                               kind: str = "bce") -> torch.Tensor:
    """The generator's adversarial term: make D call SR real.

    ``ragan`` (relativistic average, ESRGAN) also needs D's logits on HR, which carry no gradient.
    """
    if kind == "bce":
        return _bce(fake_logits, True)
    assert real_logits is not None, "ragan needs the discriminator's logits on HR"
    real_logits = real_logits.detach()
    return 0.5 * (_bce(real_logits - fake_logits.mean(), False) + _bce(fake_logits - real_logits.mean(), True))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The discriminator's loss on HR (real) and detached SR (fake)."""
    if kind == "bce":
        return 0.5 * (_bce(real_logits, True) + _bce(fake_logits, False))
    return 0.5 * (_bce(real_logits - fake_logits.mean(), True) + _bce(fake_logits - real_logits.mean(), False))


def feature_matching_loss(fake_features: list[torch.Tensor], real_features: list[torch.Tensor]) -> torch.Tensor:
    """Mean over D's blocks of the L1 distance between its activations on SR and on HR (pix2pixHD).

    HR's activations are targets (detached); D itself is frozen while G trains, so the term moves
    only the generator. It needs no downloaded weights: D is the feature network.
    """
    distances = [F.l1_loss(fake.float(), real.detach().float()) for fake, real in zip(fake_features, real_features)]
    return torch.stack(distances).mean()


class PerceptualLoss(nn.Module):
    """L1 distance between feature maps of SR and HR under a frozen feature network."""

    def __init__(self, feature_net: nn.Module):
        super().__init__()
        self.feature_net = feature_net

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.feature_net(hr)
        return F.l1_loss(self.feature_net(sr), target)


class GeneratorLoss(nn.Module):
    """The weighted generator objective; returns the total and each weighted term."""

    def __init__(self, cfg: LossConfig, feature_net: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        if uses_vgg(cfg) and feature_net is None:
            raise ValueError("loss.perceptual=vgg with loss.perceptual_weight > 0 needs a feature network "
                             "(build_vgg19_features)")
        self.perceptual = PerceptualLoss(feature_net) if feature_net is not None and uses_vgg(cfg) else None

    @property
    def matches_d_features(self) -> bool:
        """True when the perceptual term is feature matching on D (G's step then needs D's HR activations)."""
        return self.cfg.perceptual == "d_features" and self.cfg.perceptual_weight > 0

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, fake_logits: torch.Tensor | None = None,
                real_logits: torch.Tensor | None = None, fake_features: list[torch.Tensor] | None = None,
                real_features: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Adversarial and perceptual terms are included only when ``fake_logits`` is given (GAN phase);
        ``loss.perceptual=d_features`` also needs D's activations on SR and HR."""
        cfg = self.cfg
        terms = {"pixel": cfg.pixel_weight * pixel_loss(sr.float(), hr.float(), cfg.pixel)}
        if cfg.tv_weight > 0:
            terms["tv"] = cfg.tv_weight * total_variation(sr.float())
        if fake_logits is not None:
            if self.perceptual is not None:
                terms["perceptual"] = cfg.perceptual_weight * self.perceptual(sr, hr).float()
            elif self.matches_d_features:
                assert fake_features is not None and real_features is not None, \
                    "loss.perceptual=d_features needs the discriminator's activations on SR and HR"
                terms["perceptual"] = cfg.perceptual_weight * feature_matching_loss(fake_features, real_features)
            if cfg.adversarial_weight > 0:
                terms["adversarial"] = cfg.adversarial_weight * generator_adversarial_loss(
                    fake_logits, real_logits, cfg.adversarial)
        total = torch.stack(list(terms.values())).sum()
        return total, terms
