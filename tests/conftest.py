"""Fixtures shared by the whole suite: the real X-rays of ../shared, skipped cleanly when absent."""
from __future__ import annotations

from pathlib import Path

import pytest

# the uninterrupted runs of the multi-node and fault tests, one of each per session
from tests.multinode_runs import multinode_images, one_node_run, two_node_run  # noqa: F401

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


@pytest.fixture(scope="session")
def synth_images(tmp_path_factory) -> Path:
    """Sixteen 256 px synthetic chest phantoms in the Kaggle layout (the embedded default)."""
    from data_prep.synth import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("synth") / "synth", 16, seed=0, size_px=256)


def tiny_config(out_dir: Path, images: Path, *overrides: str):
    """The bundled tiny CPU config pointed at ``images`` and ``out_dir``, plus overrides."""
    from dist_train.config import load_config

    return load_config("tiny_cpu", [f"data.images={images}", f"train.out_dir={out_dir}", "data.workers=0",
                                    *overrides])
