"""Builders for the data_prep tests (no tests here): bad-input folders, zips, shard readers."""
from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.synth import CSV_HEADER


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode an array with Pillow, the mode following from its shape and dtype."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(size_px: int = 96, seed: int = 0) -> np.ndarray:
    """A uint8 test picture with some structure."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size_px, :size_px]
    return ((x * 2 + y + rng.integers(0, 40, (size_px, size_px))) % 256).astype(np.uint8)


def csv_row(name: str, patient: int, follow_up: int, size_px: int = 96) -> list[str]:
    """A Data_Entry_2017 row."""
    return [name, "No Finding", str(follow_up), str(patient), "40", "F", "PA",
            str(size_px), str(size_px), "0.143", "0.143", ""]


def write_csv(path: Path, rows: list[list[str]]) -> None:
    """A Data_Entry_2017.csv with Kaggle's header."""
    lines = [",".join(CSV_HEADER)] + [",".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def _palette_png(gray: np.ndarray) -> bytes:
    """`gray` as a palette (mode P) PNG."""
    buffer = io.BytesIO()
    Image.fromarray(gray).convert("P").save(buffer, format="PNG")
    return buffer.getvalue()


# name -> expected outcome; what `build_bad_inputs` writes into images_001/images/.
BAD_INPUT_EXPECTATIONS = {
    "00000001_000.png": "passthrough",          # plain 8-bit gray
    "00000001_001.png": "truncated PNG",        # cut in the middle of IDAT
    "00000002_000.png": "corrupt PNG",          # one flipped byte inside IDAT (CRC mismatch)
    "00000003_000.png": "zero-byte file",
    "00000004_000.png": "not a decodable image",  # text named .png
    "00000005_000.png": "unexpected size",      # 64 x 80 where 96 x 96 is expected
    "00000006_000.png": "converted",            # RGBA, R=G=B
    "00000006_001.png": "converted",            # LA
    "00000007_000.png": "converted",            # palette
    "00000007_001.png": "converted",            # 16-bit gray
    "00000008_000.png": "converted",            # RGB with different channels
    "00000009_000.png": "passthrough",          # no metadata row: patient from the NIH name
}


def build_bad_inputs(root: Path, size_px: int = 96) -> Path:
    """A Kaggle-layout folder holding every kind of bad input the sharder must survive."""
    folder = root / "images_001" / "images"
    folder.mkdir(parents=True)
    gray = gradient(size_px)
    good = png_bytes(gray)
    idat = good.index(b"IDAT")
    flipped = bytearray(good)
    flipped[idat + 20] ^= 0xFF
    rgb = np.stack([gray, np.roll(gray, 3, axis=1), 255 - gray], axis=-1)
    files = {
        "00000001_000.png": good,
        "00000001_001.png": good[: idat + 40],
        "00000002_000.png": bytes(flipped),
        "00000003_000.png": b"",
        "00000004_000.png": b"this is not an image\n",
        "00000005_000.png": png_bytes(gradient(80)[:, :64]),
        "00000006_000.png": png_bytes(np.stack([gray] * 3 + [np.full_like(gray, 255)], axis=-1)),
        "00000006_001.png": png_bytes(np.stack([gray, np.full_like(gray, 255)], axis=-1)),
        "00000007_000.png": _palette_png(gray),
        "00000007_001.png": png_bytes(gray.astype(np.uint16) * 257),
        "00000008_000.png": png_bytes(rgb),
        "00000009_000.png": png_bytes(gradient(size_px, seed=9)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    rows = [csv_row(name, int(name[:8]), int(name[9:12]), size_px) for name in files if name != "00000009_000.png"]
    rows.append(csv_row("00000010_000.png", 10, 0, size_px))  # a row whose image was never downloaded
    write_csv(root / "Data_Entry_2017.csv", rows)
    return root


def zip_folder(folder: Path, zip_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Zip `folder` (stored, names relative to it), plus raw `extra` members."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                archive.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return zip_path


def read_shard(tar_path: Path) -> dict[str, dict[str, bytes]]:
    """{key: {extension: bytes}} of one shard, read with tarfile (independent of webdataset)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as archive:
        for member in archive:
            key, _, extension = member.name.partition(".")
            samples.setdefault(key, {})[extension] = archive.extractfile(member).read()
    return samples


def read_shard_set(root: Path) -> dict[str, dict]:
    """{key: parsed json} over every shard of the set."""
    records = {}
    for tar_path in sorted(root.glob("*.tar")):
        for key, fields in read_shard(tar_path).items():
            records[key] = json.loads(fields["json"])
    return records
