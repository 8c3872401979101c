"""`prep synth`: a synthetic NIH-like dataset in the Kaggle folder layout.

The layout and the metadata csv match what Kaggle's `nih-chest-xrays/data` extracts to
(`images_001/images/00000001_000.png`, `Data_Entry_2017.csv` with several images per patient),
so every code path that handles the real download handles this too. Image `i` depends only on
`(seed, i)`, so the set is deterministic and a re-run skips the images already written.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.atomic import atomic_open, write_bytes_atomic, write_json_atomic
from data_prep.image_io import encode_png_gray8
from data_prep.phantom import Anatomy, render_phantom

METADATA_NAME = "Data_Entry_2017.csv"
SETTINGS_NAME = ".synth-settings.json"  # hidden: lets a re-run resume only into the same set
IMAGES_PER_FOLDER = 10_000
# Kaggle's Data_Entry_2017.csv header, trailing empty column included.
CSV_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
              "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
              "OriginalImagePixelSpacing[x", "y]", ""]
FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia"]


@dataclass(frozen=True)
class SynthImage:
    """One planned image: where it goes and the metadata row describing it."""

    index: int
    patient_id: int
    follow_up: int
    name: str
    folder: str


def plan_images(n: int, seed: int, max_per_patient: int = 5) -> list[SynthImage]:
    """Assign `n` images to patients (1 to `max_per_patient` follow-ups each), deterministically."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    images: list[SynthImage] = []
    patient_id = 0
    while len(images) < n:
        patient_id += 1
        for follow_up in range(int(rng.integers(1, max_per_patient + 1))):
            if len(images) == n:
                break
            index = len(images)
            images.append(SynthImage(index=index, patient_id=patient_id, follow_up=follow_up,
                                     name=f"{patient_id:08d}_{follow_up:03d}.png",
                                     folder=f"images_{index // IMAGES_PER_FOLDER + 1:03d}"))
    return images


def _patient_anatomy(seed: int, patient_id: int) -> Anatomy:
    return Anatomy.sample(np.random.default_rng([seed, patient_id, 1]))


def render_image(item: SynthImage, seed: int, size_px: int) -> np.ndarray:
    """The pixels of one planned image (a follow-up of its patient's anatomy)."""
    rng = np.random.default_rng([seed, item.patient_id, item.follow_up, 2])
    anatomy = _patient_anatomy(seed, item.patient_id).jittered(rng)
    return render_phantom(anatomy, rng, size_px)


def metadata_row(item: SynthImage, seed: int, size_px: int) -> list[str]:
    """The Data_Entry_2017 row for `item` (labels, age, sex and view drawn per patient)."""
    rng = np.random.default_rng([seed, item.patient_id, 3])
    age = int(rng.integers(18, 85)) + item.follow_up // 2
    sex = "M" if rng.random() < 0.55 else "F"
    view = "PA" if rng.random() < 0.7 else "AP"
    finding_rng = np.random.default_rng([seed, item.patient_id, item.follow_up, 4])
    count = int(finding_rng.choice([0, 0, 0, 1, 1, 2]))
    labels = sorted(finding_rng.choice(FINDINGS, size=count, replace=False).tolist()) or ["No Finding"]
    return [item.name, "|".join(labels), str(item.follow_up), str(item.patient_id), str(age), sex,
            view, str(size_px), str(size_px), "0.143", "0.143", ""]


def _claim_folder(out: Path, settings: dict) -> None:
    """Refuse to resume into a folder made with other settings (its images would be mixed in)."""
    marker = out / SETTINGS_NAME
    if marker.exists():
        previous = json.loads(marker.read_text())
        if previous != settings:
            raise ValueError(f"{out}: holds a synthetic set made with {previous}, not {settings}; "
                             "use an empty folder")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, settings)


def make_synthetic(out: Path, n: int, seed: int = 0, size_px: int = 1024) -> Path:
    """Write `n` synthetic chest radiographs and their metadata csv under `out`; return `out`.

    Deterministic by `seed`; files already present (from an interrupted run) are kept.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1 (got {n})")
    if size_px < 64:
        raise ValueError(f"size_px must be at least 64 (got {size_px}): ribs need room")
    out = Path(out)
    _claim_folder(out, {"seed": seed, "size_px": size_px})
    items = plan_images(n, seed)
    for item in items:
        folder = out / item.folder / "images"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / item.name
        if not path.exists():
            write_bytes_atomic(path, encode_png_gray8(render_image(item, seed, size_px)))
    with atomic_open(out / METADATA_NAME, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        writer.writerows(metadata_row(item, seed, size_px) for item in items)
    return out
