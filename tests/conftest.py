"""Fixtures shared by the whole suite: the real X-rays of ../shared, skipped cleanly when absent."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


def _shared_dir(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real data lives in ../shared, never in the repo)")
    return path


@pytest.fixture(scope="session")
def realxray_dir() -> Path:
    """Ten real NIH PNGs (one RGBA) and two real chest DICOMs."""
    return _shared_dir("realxray")


@pytest.fixture(scope="session")
def nih_sample_dir() -> Path:
    """312 real NIH PNGs in the Kaggle layout with NIH's full metadata table."""
    return _shared_dir("nih-sample")
