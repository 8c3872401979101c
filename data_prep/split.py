"""Patient-disjoint train/val/test assignment and the seeded order of samples within a split.

Patients, not images, are split: NIH has 30,805 patients with up to 184 images each, and a random
image split puts the same chest in training and validation. Patients are ranked by a seeded hash
of their id, which is a permutation that stays stable when more patients arrive (a partial
download grows without reshuffling those already seen); exact counts are then taken from the top.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

SPLITS = ("train", "val", "test")


def seeded_rank(seed: int, text: str) -> bytes:
    """A seeded, platform-independent sort key for `text`."""
    return hashlib.sha256(f"{seed}\x00{text}".encode()).digest()


def _take(count_total: int, fraction: float) -> int:
    """round(fraction * total), but at least one when the fraction is positive and room allows."""
    if fraction <= 0 or count_total < 2:
        return 0
    return min(max(1, round(fraction * count_total)), count_total - 1)


def assign_splits(
    patients: Iterable[str],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    official_test_patients: set[str] | None = None,
) -> dict[str, str]:
    """{patient id: split}. Test is the official list's patients when given, else a seeded
    `test_fraction` of patients; validation is `val_fraction` of the remaining (train/val) patients.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    ranked = sorted(set(patients), key=lambda p: seeded_rank(seed, p))
    if official_test_patients is not None:
        test = [p for p in ranked if p in official_test_patients]
        rest = [p for p in ranked if p not in official_test_patients]
    else:
        n_test = _take(len(ranked), test_fraction)
        test, rest = ranked[:n_test], ranked[n_test:]
    n_val = _take(len(rest), val_fraction)
    assignment = {p: "test" for p in test}
    assignment.update({p: "val" for p in rest[:n_val]})
    assignment.update({p: "train" for p in rest[n_val:]})
    return assignment
