"""NIH ChestX-ray14 metadata: the Data_Entry csv (2017 or v2020 revision) and the official lists.

Rows are keyed by image name (`00000001_000.png`). Both csv revisions are accepted: the 2017
Kaggle file (ages as plain numbers, a trailing empty column) and the v2020 revision (also gzipped
as torchxrayvision ships it); older copies write ages as `058Y`.
"""
from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from dataclasses import asdict, dataclass

NIH_NAME = re.compile(r"^(\d{8})_(\d{3})$")
REDOWNLOAD_HINT = ("download it again (`cxr-sr prep download` resumes), or remove it to take patients "
                   "from the image names")


@dataclass(frozen=True)
class ImageMeta:
    """One metadata row, normalised. `patient_id` is a string (NIH ids zero-padded to 8 digits)."""

    image: str
    patient_id: str
    follow_up: int | None = None
    view: str | None = None
    age: int | None = None
    sex: str | None = None
    labels: tuple[str, ...] = ()
    original_size: tuple[int, int] | None = None

    def to_json(self) -> dict:
        """A json-ready dict (tuples become lists)."""
        record = asdict(self)
        record["labels"] = list(self.labels)
        record["original_size"] = list(self.original_size) if self.original_size else None
        return record


def nih_patient_from_name(stem: str) -> tuple[str, int] | None:
    """('00000001', 0) for the NIH-style stem '00000001_000', else None."""
    match = NIH_NAME.match(stem)
    return (match.group(1), int(match.group(2))) if match else None


def _age(text: str) -> int | None:
    digits = re.match(r"^\s*0*(\d+)\s*[Yy]?\s*$", text or "")
    return int(digits.group(1)) if digits else None


def _int_or_none(text: str) -> int | None:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None


def _row_to_meta(row: list[str], columns: dict[str, int]) -> ImageMeta:
    def get(column: str) -> str:
        """The stripped cell of `column`, or '' when the table lacks it."""
        index = columns.get(column)
        return row[index].strip() if index is not None and index < len(row) else ""

    width, height = _int_or_none(get("width")), _int_or_none(get("height"))
    labels = tuple(label for label in get("Finding Labels").split("|") if label)
    return ImageMeta(
        image=get("Image Index"), patient_id=f"{int(get('Patient ID')):08d}",
        follow_up=_int_or_none(get("Follow-up #")), view=get("View Position") or None,
        age=_age(get("Patient Age")), sex=get("Patient Gender") or None, labels=labels,
        original_size=(width, height) if width and height else None,
    )


def _column_index(header: list[str]) -> dict[str, int]:
    """Map the columns we use to positions; the size header is split in two by its comma."""
    columns = {name.strip(): i for i, name in enumerate(header)}
    for i, name in enumerate(header):
        if name.strip().startswith("OriginalImage["):
            columns["width"], columns["height"] = i, i + 1
    missing = [c for c in ("Image Index", "Patient ID") if c not in columns]
    if missing:
        raise ValueError(f"not an NIH Data_Entry table: no column {missing[0]!r}")
    return columns


class MetadataTable:
    """{image name: ImageMeta}, converting a row only when asked for: a partial download uses a
    few of NIH's 112,120 rows, and converting all of them would dominate a small run."""

    def __init__(self, rows: dict[str, list[str]], columns: dict[str, int], name: str):
        self._rows, self._columns, self._name = rows, columns, name

    def __contains__(self, image: object) -> bool:
        return image in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __bool__(self) -> bool:
        return True  # a table with no rows is still a metadata source

    def names(self) -> set[str]:
        """Every image name listed."""
        return set(self._rows)

    def __getitem__(self, image: str) -> ImageMeta:
        try:
            return _row_to_meta(self._rows[image], self._columns)
        except ValueError:
            raise ValueError(f"{self._name}: bad row for {image}: {self._rows[image]!r:.80}; "
                             f"fix the row, or {REDOWNLOAD_HINT}") from None


def parse_data_entry(raw: bytes, name: str) -> MetadataTable:
    """Parse a Data_Entry csv (gzipped or not); rows are keyed by image name.

    A truncated or corrupt file (a partial download) is a ValueError saying so, never a
    half-read table: images beyond the cut would silently lose their metadata.
    """
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"{name}: truncated or corrupt gzip ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}); {REDOWNLOAD_HINT}") from None
    try:
        reader = csv.reader(io.StringIO(raw.decode("utf-8-sig")))
        columns = _column_index(next(reader))
        index = columns["Image Index"]
        rows = {row[index].strip(): row for row in reader if len(row) > index and row[index].strip()}
    except StopIteration:
        raise ValueError(f"{name}: empty metadata table; {REDOWNLOAD_HINT}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not UTF-8 text at byte {exc.start}; {REDOWNLOAD_HINT}") from None
    except (ValueError, csv.Error) as exc:
        raise ValueError(f"{name}: {' '.join(str(exc).split())}; {REDOWNLOAD_HINT}") from None
    return MetadataTable(rows, columns, name)


def parse_image_list(raw: bytes) -> set[str]:
    """The image names of train_val_list.txt / test_list.txt (one per line)."""
    return {line.strip() for line in raw.decode("utf-8-sig").splitlines() if line.strip()}
