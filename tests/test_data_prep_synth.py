"""The synthetic phantoms: the embedded default dataset of the demo and of every loader test."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.synth import METADATA_NAME, make_synthetic


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory) -> Path:
    """12 synthetic 256 px images, seed 3."""
    return make_synthetic(tmp_path_factory.mktemp("synth") / "a", 12, seed=3, size_px=256)


def _pngs(root: Path) -> list[Path]:
    """The images of a synthetic set, by name."""
    return sorted(root.glob("images_*/images/*.png"))


def test_kaggle_layout_and_metadata_with_several_images_per_patient(synth_set: Path) -> None:
    """Every code path written for the Kaggle download must work on the synthetic set unchanged."""
    pngs = _pngs(synth_set)
    assert len(pngs) == 12 and all(p.parent.parent.name == "images_001" for p in pngs)
    with open(synth_set / METADATA_NAME, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["Image Index"] for r in rows) == [p.name for p in pngs]
    per_patient = Counter(r["Patient ID"] for r in rows)
    assert max(per_patient.values()) > 1, "patient-disjoint splitting needs patients with follow-ups"
    for row in rows:
        assert row["Image Index"] == f"{int(row['Patient ID']):08d}_{int(row['Follow-up #']):03d}.png"
    image = Image.open(pngs[0])
    assert image.mode == "L" and image.size == (256, 256)


def test_same_seed_same_bytes_other_seed_other_images(synth_set: Path, tmp_path: Path) -> None:
    """Tests and the demo rely on the set being reproducible from its seed alone."""
    again = make_synthetic(tmp_path / "b", 12, seed=3, size_px=256)
    other = make_synthetic(tmp_path / "c", 4, seed=4, size_px=256)
    for first, second in zip(_pngs(synth_set), _pngs(again)):
        assert first.read_bytes() == second.read_bytes()
    assert (synth_set / METADATA_NAME).read_bytes() == (again / METADATA_NAME).read_bytes()
    assert _pngs(synth_set)[0].read_bytes() != _pngs(other)[0].read_bytes()


def test_images_have_high_frequency_structure(synth_set: Path) -> None:
    """SR learns nothing from smooth blobs: a 4x bicubic round trip must lose real detail,
    and the image must span dark air to bright bone."""
    pixels = np.asarray(Image.open(_pngs(synth_set)[0]), np.float64)
    small = Image.fromarray(pixels.astype(np.uint8)).resize((64, 64), Image.BICUBIC)
    back = np.asarray(small.resize((256, 256), Image.BICUBIC), np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((pixels - back) ** 2))
    assert psnr < 35, f"round trip PSNR {psnr:.1f} dB: too little high-frequency content"
    assert pixels.min() < 20 and pixels.max() > 200
    follow_ups = [np.asarray(Image.open(p), np.float64) for p in _pngs(synth_set)[:3]]
    assert not np.array_equal(follow_ups[0], follow_ups[1])


def test_rerun_resumes_and_refuses_other_settings(synth_set: Path, tmp_path: Path) -> None:
    """An interrupted synth resumes (kept files are not rewritten); a folder made with other
    settings is refused instead of silently mixing two sets."""
    out = make_synthetic(tmp_path / "d", 3, seed=0, size_px=128)
    first = _pngs(out)[0]
    stamp = first.stat().st_mtime_ns
    first_two = _pngs(out)[:2]
    _pngs(out)[2].unlink()
    make_synthetic(out, 3, seed=0, size_px=128)
    assert first.stat().st_mtime_ns == stamp and len(_pngs(out)) == 3
    assert _pngs(out)[:2] == first_two
    with pytest.raises(ValueError, match="made with"):
        make_synthetic(out, 3, seed=1, size_px=128)
