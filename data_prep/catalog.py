"""From a source's file list to the images to shard: metadata join, keys and patient ids.

A Kaggle-style source is recognised by its `Data_Entry_2017*.csv[.gz]` (at the top or one folder
down); the official `train_val_list.txt` / `test_list.txt` are used when present. Metadata rows
without an image (a partial download) are counted; an image without a row gets its patient id
from its NIH-style name, its DICOM PatientID or, failing both, its own key (one patient per image),
unless `unlisted="refuse"`, which skips it.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from data_prep.image_io import DICOM_SUFFIXES, IMAGE_SUFFIXES
from data_prep.metadata import ImageMeta, MetadataTable, nih_patient_from_name, parse_data_entry, parse_image_list
from data_prep.sources import Entry, FolderSource, ZipSource

METADATA_PATTERN = re.compile(r"^Data_Entry_2017.*\.csv(\.gz)?$", re.IGNORECASE)
UNLISTED_CHOICES = ("infer", "refuse")


@dataclass(frozen=True)
class Candidate:
    """An image to decode and shard (or skip, if decoding fails)."""

    name: str
    key: str
    size: int
    meta: ImageMeta
    patient_from: str


@dataclass
class Catalog:
    """Everything the planner needs to know about a source."""

    candidates: list[Candidate]
    skipped: list[dict] = field(default_factory=list)
    metadata_file: str | None = None
    official_test: set[str] | None = None
    rows_without_image: int = 0
    rows_without_image_examples: list[str] = field(default_factory=list)


def _find_top(entries: list[Entry], pattern: re.Pattern | str) -> str | None:
    """The shallowest entry whose basename matches (depth 0 or 1 only)."""
    hits = []
    for entry in entries:
        path = PurePosixPath(entry.name)
        matches = pattern.match(path.name) if isinstance(pattern, re.Pattern) else path.name == pattern
        if matches and len(path.parts) <= 2:
            hits.append((len(path.parts), entry.name))
    return min(hits)[1] if hits else None


def _is_candidate(name: str, kaggle_layout: bool) -> bool:
    """Every file of a Kaggle `images/` folder (a broken one is then skipped and listed), files
    with an image suffix, and, outside the Kaggle layout, extension-less files (DICOM often is)."""
    path = PurePosixPath(name)
    if len(path.parts) >= 2 and path.parts[-2] == "images":
        return True
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or (suffix == "" and not kaggle_layout)


def _keys(names: list[str]) -> dict[str, str]:
    """Unique extension-free sample keys: the stem, or the whole path where stems collide.

    Only [A-Za-z0-9_-] survive: a dot would split the key (webdataset and DALI cut at the first
    dot of a basename), a slash would make a folder inside the tar.
    """
    def clean(text: str) -> str:
        """Keep [A-Za-z0-9_-], replace everything else with '_'."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", text)

    stems = {name: clean(PurePosixPath(name).stem) for name in names}
    counts = Counter(stems.values())
    keys = {}
    for name in names:
        path = PurePosixPath(name)
        keys[name] = stems[name] if counts[stems[name]] == 1 else clean(str(path.with_suffix("")).replace("/", "__"))
    # Suffix, cleaning and a stem that looks like a path can still map two names to one key
    # (d/x.png and d/x.dcm; a.b/c and a_b/c); colliding keys would merge samples in the tar.
    counts = Counter(keys.values())
    for name in names:
        if counts[keys[name]] > 1:
            keys[name] = f"{keys[name]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return keys


def _unlisted_meta(name: str, key: str, source: FolderSource | ZipSource) -> tuple[ImageMeta, str]:
    """Metadata for an image with no csv row: NIH name, else DICOM PatientID, else its own key."""
    base = PurePosixPath(name).name
    nih = nih_patient_from_name(PurePosixPath(name).stem)
    if nih:
        return ImageMeta(image=base, patient_id=nih[0], follow_up=nih[1]), "nih-name"
    if PurePosixPath(name).suffix.lower() in (*DICOM_SUFFIXES, ""):
        from data_prep.dicom_io import dicom_patient_id

        try:
            patient = dicom_patient_id(source.read(name))
        except OSError:
            patient = None
        if patient:
            return ImageMeta(image=base, patient_id=patient), "dicom"
    return ImageMeta(image=base, patient_id=f"file:{key}"), "file"


def _load_tables(source, entries: list[Entry]) -> tuple[MetadataTable | None, str | None, set[str] | None]:
    metadata_name = _find_top(entries, METADATA_PATTERN)
    table = parse_data_entry(source.read(metadata_name), metadata_name) if metadata_name else None
    test_name = _find_top(entries, "test_list.txt")
    official_test = parse_image_list(source.read(test_name)) if test_name else None
    return table, metadata_name, official_test


def build_catalog(source: FolderSource | ZipSource, unlisted: str = "infer") -> Catalog:
    """List the images of `source`, joined with its metadata (see module docstring)."""
    if unlisted not in UNLISTED_CHOICES:
        raise ValueError(f"unlisted must be one of {UNLISTED_CHOICES}, got {unlisted!r}")
    entries, refused = source.entries()
    table, metadata_name, official_test = _load_tables(source, entries)
    skipped = [{"name": name, "reason": reason} for name, reason in refused]
    images = [e for e in entries if _is_candidate(e.name, bool(metadata_name)) and e.name != metadata_name]
    seen: dict[str, str] = {}
    unique = []
    for entry in images:
        base = PurePosixPath(entry.name).name
        if table is not None and base in seen:
            skipped.append({"name": entry.name, "reason": f"duplicate of {seen[base]}"})
            continue
        seen[base] = entry.name
        unique.append(entry)
    keys = _keys([e.name for e in unique])
    candidates = []
    for entry in unique:
        base = PurePosixPath(entry.name).name
        if table is not None and base in table:
            meta, origin = table[base], "metadata"
        elif unlisted == "refuse":
            skipped.append({"name": entry.name, "reason": "no metadata row (unlisted=refuse)"})
            continue
        else:
            meta, origin = _unlisted_meta(entry.name, keys[entry.name], source)
        candidates.append(Candidate(entry.name, keys[entry.name], entry.size, meta, origin))
    missing = sorted(table.names() - set(seen)) if table is not None else []
    return Catalog(candidates=candidates, skipped=skipped, metadata_file=metadata_name,
                   official_test=official_test, rows_without_image=len(missing),
                   rows_without_image_examples=missing[:10])
