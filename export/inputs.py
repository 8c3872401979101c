"""The files `cxr-sr upscale` reads (files and folders) and the names it writes."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from data_prep.image_io import DICOM_SUFFIXES

IMAGE_SUFFIXES = (".png", *DICOM_SUFFIXES)


def collect_inputs(paths: Iterable[Path]) -> list[Path]:
    """Named files as given (bad ones fail later, one by one); folders: their image files, sorted.

    Files inside a folder are taken by extension only, so a README next to the images is not an
    error; files named explicitly are always attempted.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def output_path(source: Path, out_dir: Path, kind: str, taken: set[Path]) -> Path:
    """``out_dir/<stem>.png|.dcm``, with ``-1``, ``-2``... when two inputs share a stem."""
    suffix = ".dcm" if kind == "dicom" else ".png"
    candidate = out_dir / f"{source.stem}{suffix}"
    counter = 1
    while candidate in taken:
        candidate = out_dir / f"{source.stem}-{counter}{suffix}"
        counter += 1
    taken.add(candidate)
    return candidate
