"""One SRGAN training step: update G (D frozen), then D on the detached SR.

In the PSNR phase only the generator's pixel (and optional TV) terms are used and D is not
touched. D always sees HR and SR in separate forward passes: in one mixed batch, a layer with
batch statistics (BatchNorm) lets each half's statistics tell D which half is which, so D
learns the batch layout instead of detail and is at chance on any other batch. A non-finite
loss on any rank skips that network's update on every rank (all ranks must agree, or DDP's
gradient all-reduce would hang) and is reported as a bad step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from dist_train import distributed
from dist_train.backends import TrainBackend
from dist_train.losses import GeneratorLoss, discriminator_loss

# Mean d_accuracy over a logging interval below this is chance: 0.5 plus the spread of a
# 16-patch batch averaged over a few steps.
CHANCE_ACCURACY = 0.6


@dataclass
class StepOutcome:
    """Detached loss values of one step and, per network that was updated, whether it stepped.

    ``stepped`` holds ``g`` always and ``d`` in the GAN phase; a network counts as stepped only
    when every update it had this step was applied (none was skipped as non-finite).
    """
    losses: dict[str, float] = field(default_factory=dict)
    stepped: dict[str, bool] = field(default_factory=dict)

    def record_update(self, net: str, applied: bool) -> None:
        self.stepped[net] = self.stepped.get(net, True) and applied

    @property
    def bad(self) -> bool:
        """Some network's update was skipped as non-finite."""
        return not all(self.stepped.values())


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Parameters of ``module`` need no gradient inside the block (restored afterwards)."""
    previous = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for param, flag in zip(module.parameters(), previous):
            param.requires_grad_(flag)


def _record_and_check(named: dict[str, torch.Tensor], total: torch.Tensor, backend: TrainBackend,
                      outcome: StepOutcome) -> bool:
    """Add the loss values to ``outcome``; True when ``total`` is finite on every rank.

    One wait on the device per network: the finiteness flag travels through the all-reduce as a
    tensor and the values are copied to the host after it.
    """
    finite = not distributed.any_rank(~torch.isfinite(total.detach()), backend.env.device)
    values = torch.stack([value.detach().float() for value in named.values()]).tolist()
    outcome.losses.update(zip(named, values))
    return finite


def generator_step(backend: TrainBackend, objective: GeneratorLoss, lr_batch: torch.Tensor,
                   hr_batch: torch.Tensor, gan_phase: bool, outcome: StepOutcome) -> torch.Tensor:
    """Update G on pixel (+ perceptual + adversarial in the GAN phase); returns the detached SR."""
    discriminator = backend.module("d")
    with backend.precision.autocast():
        sr = backend.forward("g", lr_batch)
        fake_logits = real_logits = fake_features = real_features = None
        if gan_phase:
            with frozen(discriminator):
                fake_logits, fake_features = discriminator.forward_with_features(sr)
                if objective.cfg.adversarial == "ragan" or objective.matches_d_features:
                    with torch.no_grad():
                        real_logits, real_features = discriminator.forward_with_features(hr_batch)
        total, terms = objective(sr, hr_batch, fake_logits, real_logits, fake_features, real_features)
    named = {f"g_{name}": value for name, value in terms.items()} | {"g_total": total}
    if _record_and_check(named, total, backend, outcome):
        backend.backward("g", total)
        backend.step("g")
        outcome.record_update("g", True)
    else:
        outcome.record_update("g", False)
    return sr.detach()


def real_fake_logits(forward, hr_batch: torch.Tensor, sr_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D's fp32 logits on HR and on SR, from two forward passes (never one mixed batch)."""
    return forward(hr_batch).float(), forward(sr_batch.to(hr_batch.dtype)).float()


def discriminator_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Share of HR logits above the mean SR logit and of SR logits below the mean HR logit.

    Relative, like the RaGAN loss, so it means the same for both losses: 0.5 is chance, 1.0 a D
    that ranks every HR patch above the average SR patch and every SR patch below the average HR.
    """
    real_above = (real_logits > fake_logits.mean()).float().mean()
    fake_below = (fake_logits < real_logits.mean()).float().mean()
    return 0.5 * (real_above + fake_below)


def discriminator_step(backend: TrainBackend, kind: str, sr_batch: torch.Tensor, hr_batch: torch.Tensor,
                       outcome: StepOutcome, record: bool = True) -> None:
    """Update D on HR (real) and the detached SR (fake); ``record`` puts its figures in ``outcome``.

    The figures come from the logits before this update, so ``d_accuracy`` is measured on a batch
    D has not yet trained on.
    """
    with backend.precision.autocast():
        real_logits, fake_logits = real_fake_logits(lambda x: backend.forward("d", x), hr_batch, sr_batch)
        loss = discriminator_loss(real_logits, fake_logits, kind)
    real_mean, fake_mean = real_logits.detach().mean(), fake_logits.detach().mean()
    named = {"d_loss": loss, "d_real_logit": real_mean, "d_fake_logit": fake_mean,
             "d_logit_gap": real_mean - fake_mean,
             "d_accuracy": discriminator_accuracy(real_logits.detach(), fake_logits.detach())}
    if _record_and_check(named, loss, backend, outcome if record else StepOutcome()):
        backend.backward("d", loss)
        backend.step("d")
        outcome.record_update("d", True)
    else:
        outcome.record_update("d", False)


def train_step(backend: TrainBackend, objective: GeneratorLoss, lr_batch: torch.Tensor,
               hr_batch: torch.Tensor, gan_phase: bool) -> StepOutcome:
    """The whole step: G, then (GAN phase only) D."""
    outcome = StepOutcome()
    sr = generator_step(backend, objective, lr_batch, hr_batch, gan_phase, outcome)
    if gan_phase:
        for update in range(backend.cfg.optim.d_steps):
            discriminator_step(backend, objective.cfg.adversarial, sr, hr_batch, outcome, record=update == 0)
    return outcome


class ChanceWatch:
    """Notices a discriminator that stays at chance for ``intervals`` consecutive logging intervals.

    Its adversarial term is then noise for the generator; the trainer logs the warning this returns.
    """

    def __init__(self, intervals: int):
        self.intervals, self.at_chance = intervals, 0

    def update(self, accuracies: list[float]) -> str | None:
        """Feed one interval's per-step ``d_accuracy`` values; a warning line every ``intervals`` at chance."""
        if self.intervals == 0 or not accuracies:
            return None
        mean = sum(accuracies) / len(accuracies)
        self.at_chance = self.at_chance + 1 if mean < CHANCE_ACCURACY else 0
        if self.at_chance == 0 or self.at_chance % self.intervals:
            return None
        return (f"warning: the discriminator has been at chance for {self.at_chance} logging intervals "
                f"(d_accuracy {mean:.2f} < {CHANCE_ACCURACY}): its adversarial term only adds noise; "
                f"check model.d_* and optim.lr_d/d_steps")
