"""One SRGAN training step: update G (D frozen), then D on the detached SR.

In the PSNR phase only the generator's pixel (and optional TV) terms are used and D is not
touched. A non-finite loss on any rank skips that network's update on every rank (all ranks must
agree, or DDP's gradient all-reduce would hang) and is reported as a bad step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from dist_train import distributed
from dist_train.backends import TrainBackend
from dist_train.losses import GeneratorLoss, discriminator_loss


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
        fake_logits = real_logits = None
        if gan_phase:
            with frozen(discriminator):
                fake_logits = discriminator(sr)
                if objective.cfg.adversarial == "ragan":
                    with torch.no_grad():
                        real_logits = discriminator(hr_batch)
        total, terms = objective(sr, hr_batch, fake_logits, real_logits)
    named = {f"g_{name}": value for name, value in terms.items()} | {"g_total": total}
    if _record_and_check(named, total, backend, outcome):
        backend.backward("g", total)
        backend.step("g")
        outcome.record_update("g", True)
    else:
        outcome.record_update("g", False)
    return sr.detach()


def discriminator_step(backend: TrainBackend, kind: str, sr_batch: torch.Tensor, hr_batch: torch.Tensor,
                       outcome: StepOutcome) -> None:
    """Update D on HR (real) and the detached SR (fake) in one forward pass."""
    with backend.precision.autocast():
        logits = backend.forward("d", torch.cat([hr_batch, sr_batch.to(hr_batch.dtype)]))
        real_logits, fake_logits = logits.float().split(hr_batch.shape[0])
        loss = discriminator_loss(real_logits, fake_logits, kind)
    named = {"d_loss": loss, "d_real_logit": real_logits.mean(), "d_fake_logit": fake_logits.mean()}
    if _record_and_check(named, loss, backend, outcome):
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
        discriminator_step(backend, objective.cfg.adversarial, sr, hr_batch, outcome)
    return outcome
