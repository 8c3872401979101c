"""Parity of an exported model with the eager generator it came from.

The exported graph must compute what eager computes: the check runs both on random inputs of
several batch and image sizes and on real images, reports the largest absolute difference and
fails above the tolerance (1e-5 in fp32: below one 16-bit gray level, 1.5e-5, yet far above
float32 reordering noise).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

FP32_TOLERANCE = 1e-5
# (batch, height, width) of the random parity inputs: odd sizes and the contract's minimum 8 px.
RANDOM_CASES: tuple[tuple[int, int, int], ...] = ((1, 8, 8), (2, 17, 23), (3, 32, 24), (2, 48, 48))


class ParityError(RuntimeError):
    """The exported model differs from eager by more than the tolerance."""


@dataclass
class ParityReport:
    """Max abs difference per named input, and overall."""

    rows: list[tuple[str, tuple[int, ...], float]] = field(default_factory=list)
    tolerance: float = FP32_TOLERANCE

    @property
    def max_abs_diff(self) -> float:
        return max((diff for _, _, diff in self.rows), default=0.0)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        cases = ", ".join(f"{name} {'x'.join(map(str, shape))}: {diff:.2e}" for name, shape, diff in self.rows)
        verdict = "ok" if self.passed else "FAILED"
        return f"parity {verdict}: max abs diff {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}); {cases}"


def random_inputs(cases: Sequence[tuple[int, int, int]] = RANDOM_CASES,
                  seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Uniform [0, 1] batches of each (batch, height, width), from a private generator."""
    rng = torch.Generator().manual_seed(seed)
    return [(f"random[{b}]", torch.rand(b, 1, h, w, generator=rng)) for b, h, w in cases]


def real_inputs(images: Iterable[torch.Tensor], scale: int, crop_px: int = 64) -> list[tuple[str, torch.Tensor]]:
    """LR crops of real HR images (``H x W`` in [0, 1]): each alone, and all stacked as one batch.

    The HR image is degraded with the project's one degradation, so the inputs look like what
    the model sees in use; a central crop keeps the check fast on CPU.
    """
    from dist_train.degradation import crop_to_scale, downsample

    crops = []
    for hr in images:
        lr = downsample(crop_to_scale(hr, scale)[None, None].float(), scale)
        top, left = max(0, (lr.shape[-2] - crop_px) // 2), max(0, (lr.shape[-1] - crop_px) // 2)
        crops.append(lr[..., top:top + crop_px, left:left + crop_px])
    named = [(f"real[{i}]", crop) for i, crop in enumerate(crops)]
    same_shape = [c for c in crops if c.shape == crops[0].shape] if crops else []
    if len(same_shape) > 1:
        named.append(("real-batch", torch.cat(same_shape)))
    return named


def check_parity(reference: Callable[[torch.Tensor], torch.Tensor],
                 candidate: Callable[[torch.Tensor], torch.Tensor],
                 inputs: Sequence[tuple[str, torch.Tensor]],
                 tolerance: float = FP32_TOLERANCE) -> ParityReport:
    """Runs both on every input; raises ParityError when any difference exceeds `tolerance`."""
    report = ParityReport(tolerance=tolerance)
    with torch.inference_mode():
        for name, batch in inputs:
            expected, actual = reference(batch), candidate(batch)
            if actual.shape != expected.shape:
                raise ParityError(f"{name}: exported output {tuple(actual.shape)} != eager {tuple(expected.shape)}")
            diff = (actual.double() - expected.double()).abs().max().item()
            report.rows.append((name, tuple(batch.shape), diff))
    if not report.passed:
        raise ParityError(report.summary())
    return report
