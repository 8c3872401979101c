"""Write one WebDataset shard and its DALI index: the unit of work (and of resume) of sharding.

Every image is decoded or fully validated before it goes in, because DALI cannot skip a corrupt
sample at training time. An 8-bit gray PNG keeps its original bytes; anything else is decoded to
8-bit gray and losslessly re-encoded, the conversion recorded in the sample's json. The tar is
written under a temporary name with fixed tar metadata (so equal input gives equal bytes), hashed,
renamed; then the index; then a small state file that marks the shard as complete for a resume.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

from data_prep.atomic import tmp_path_for, write_json_atomic
from data_prep.catalog import Candidate
from data_prep.image_io import ImageDecodeError, encode_png_gray8, read_gray8, sniff_format
from data_prep.png_check import read_png_header, verify_plain_gray8_png

TAR_MTIME = 0  # fixed tar member metadata: byte-identical shards from equal input
TAR_OWNER = "cxr-sr"
STATE_DIR = ".partial"


@dataclass(frozen=True)
class SizeRule:
    """Which decoded sizes are accepted: exactly `expect_px` square if set, at least `min_px`."""

    expect_px: int | None = None
    min_px: int = 64

    def problem(self, width: int, height: int) -> str | None:
        """Why a width x height image is refused, or None."""
        if self.expect_px and (width, height) != (self.expect_px, self.expect_px):
            return f"unexpected size {width}x{height} (expected {self.expect_px}x{self.expect_px})"
        if min(width, height) < self.min_px:
            return f"too small {width}x{height} (minimum side {self.min_px} px)"
        return None


@dataclass(frozen=True)
class ShardTask:
    """One planned shard: its place in the set and the candidates meant to go in it."""

    split: str
    index: int
    items: tuple[Candidate, ...]
    digest: str

    @property
    def stem(self) -> str:
        """`train-000000`: the file name of the tar and the index without their suffix."""
        return f"{self.split}-{self.index:06d}"


def _png_payload(data: bytes, name: str) -> tuple[bytes, int, int, str, dict | None]:
    """(png bytes, width, height, original mode, conversion record or None when passed through)."""
    kind = sniff_format(data)
    if kind == "empty":
        raise ImageDecodeError(name, "zero-byte file")
    if kind == "png" and read_png_header(data, name).is_plain_gray8:
        header = verify_plain_gray8_png(data, name)
        return data, header.width, header.height, "L", None
    pixels, record = read_gray8(data, name)
    if not record["steps"]:  # already 8-bit gray, but interlaced or not a PNG
        record["steps"].append("re-encoded as a non-interlaced 8-bit gray PNG")
    height, width = pixels.shape
    return encode_png_gray8(pixels), width, height, record.get("mode", "?"), record


def build_sample(data: bytes, item: Candidate, split: str, sizes: SizeRule) -> tuple[dict[str, Any], bool]:
    """(webdataset sample, whether the pixels were converted) for one source file, or
    `ImageDecodeError` saying why it is skipped."""
    png, width, height, mode, conversion = _png_payload(data, item.name)
    problem = sizes.problem(width, height)
    if problem:
        raise ImageDecodeError(item.name, problem)
    meta = item.meta.to_json()
    record = {
        "key": item.key, "image": meta.pop("image"), "source_path": item.name,
        "patient_id_from": item.patient_from, "split": split,
        "nih_original_image_size": meta.pop("original_size"),
        "original_size": [width, height], "original_mode": mode,
        "source_sha256": hashlib.sha256(data).hexdigest(), "conversion": conversion, **meta,
    }
    sample = {"__key__": item.key, "png": png,
              "json": json.dumps(record, sort_keys=True, separators=(",", ":")).encode()}
    return sample, conversion is not None


def _read(source: Any, name: str) -> bytes:
    try:
        return source.read(name)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as exc:
        raise ImageDecodeError(name, f"cannot read ({type(exc).__name__}: {exc})") from exc


class _HashingFile:
    """A write-only file that hashes what passes through (saves re-reading every shard)."""

    def __init__(self, handle: Any):
        self.handle, self.sha256, self.bytes = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        """Hash and write `data`."""
        self.sha256.update(data)
        self.bytes += len(data)
        return self.handle.write(data)


def write_dali_index(tar_path: Path, idx_path: Path) -> None:
    """Write the DALI index with the `wds2idx` that ships with DALI, atomically."""
    from wds2idx import IndexCreator  # installed by nvidia-dali as a top-level module

    tmp = tmp_path_for(idx_path)
    try:
        with IndexCreator(str(tar_path), str(tmp), verbose=False) as creator:
            creator.create_index()
        os.replace(tmp, idx_path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_tar(source: Any, task: ShardTask, tmp: Path, sizes: SizeRule,
               on_sample: Callable[[], None]) -> tuple[list[str], list[dict], Counter, str]:
    """Write the samples of `task` into `tmp`; return (patients, skipped, conversion counts, sha256)."""
    skipped, conversions = [], Counter()
    patients = set()
    with open(tmp, "wb") as handle:
        hashing = _HashingFile(handle)
        writer = wds.TarWriter(hashing, user=TAR_OWNER, group=TAR_OWNER, mode=0o444, mtime=TAR_MTIME,
                               compress=False)
        with writer:
            for item in task.items:
                try:
                    sample, converted = build_sample(_read(source, item.name), item, task.split, sizes)
                except ImageDecodeError as exc:
                    skipped.append({"name": item.name, "reason": exc.problem})
                else:
                    writer.write(sample)
                    patients.add(item.meta.patient_id)
                    conversions["converted" if converted else "passthrough"] += 1
                on_sample()
    return sorted(patients), skipped, conversions, hashing.sha256.hexdigest()


def write_shard(source: Any, task: ShardTask, out: Path, sizes: SizeRule,
                on_sample: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Write `{stem}.tar` and `{stem}.idx` into `out`, then the state file; return the shard record."""
    tar_path, idx_path = out / f"{task.stem}.tar", out / f"{task.stem}.idx"
    tmp = tmp_path_for(tar_path)
    try:
        patients, skipped, conversions, sha256 = _write_tar(source, task, tmp, sizes, on_sample)
        samples = sum(conversions.values())
        record: dict[str, Any] = {"split": task.split, "shard": task.index, "samples": samples,
                                  "patients": patients, "skipped": skipped,
                                  "conversions": dict(sorted(conversions.items()))}
        if samples:
            record.update(file=tar_path.name, index_file=idx_path.name,
                          bytes=tmp.stat().st_size, sha256=sha256)
            os.replace(tmp, tar_path)
            write_dali_index(tar_path, idx_path)
    finally:
        tmp.unlink(missing_ok=True)
    write_json_atomic(out / STATE_DIR / f"{task.stem}.json", {"digest": task.digest, "record": record})
    return record
