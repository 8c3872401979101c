"""`prep verify`: re-check a shard set against its manifest; every problem named in one line.

Checks: each listed shard exists with the recorded size and sha256; its index equals the one
`wds2idx` makes now; every sample has exactly a `png` and a `json`, an extension-free key, and a
json naming the shard's split; sample and patient counts per split match the manifest; no key
twice and no patient in two splits; no stray shard files. `deep=True` also re-validates each PNG.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from data_prep.image_io import ImageDecodeError
from data_prep.manifest import MANIFEST_NAME
from data_prep.png_check import read_png_header, verify_plain_gray8_png
from data_prep.shard import SHARD_FILE
from data_prep.shard_writer import write_dali_index
from data_prep.split import SPLITS


def _iter_samples(tar_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) of each sample, one at a time (a shard can be hundreds of MB).
    A sample's files are consecutive in a webdataset tar; a key seen again later is a duplicate."""
    key, fields = None, {}
    with tarfile.open(tar_path) as archive:
        for member in archive:
            if not member.isfile():
                continue
            name, _, extension = member.name.partition(".")
            if name != key and key is not None:
                yield key, fields
                fields = {}
            key = name
            fields[extension] = archive.extractfile(member).read()
    if key is not None:
        yield key, fields


def _sha256_of(path: Path) -> str:
    """SHA-256 of a shard, read in blocks (shards are hundreds of MB)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_index(tar_path: Path, idx_path: Path) -> list[str]:
    if not idx_path.is_file():
        return [f"{idx_path.name}: index missing"]
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / idx_path.name
        write_dali_index(tar_path, fresh)
        if fresh.read_bytes() != idx_path.read_bytes():
            return [f"{idx_path.name}: index differs from the one wds2idx makes for {tar_path.name}"]
    return []


def _check_sample(shard: dict, key: str, fields: dict[str, bytes], deep: bool) -> tuple[list[str], str | None]:
    """(problems, patient id) of one sample."""
    where = f"{shard['file']}: sample {key}"
    problems = []
    if "." in key or "/" in key or not key:
        problems.append(f"{where}: bad key (must have no extension or folder)")
    if sorted(fields) != ["json", "png"]:
        problems.append(f"{where}: fields {sorted(fields)}, expected ['json', 'png']")
    try:
        record = json.loads(fields.get("json", b""))
    except ValueError:
        return problems + [f"{where}: json field is not valid json"], None
    if record.get("split") != shard["split"]:
        problems.append(f"{where}: json says split {record.get('split')!r} in a {shard['split']} shard")
    if deep and "png" in fields:
        try:
            if read_png_header(fields["png"], where).is_plain_gray8:
                verify_plain_gray8_png(fields["png"], where)
            else:
                problems.append(f"{where}: png is not a plain 8-bit gray PNG")
        except ImageDecodeError as exc:
            problems.append(str(exc))
    return problems, record.get("patient_id")


def _check_shard(root: Path, shard: dict, deep: bool, patients: dict, keys: dict) -> list[str]:
    tar_path = root / shard["file"]
    if not tar_path.is_file():
        return [f"{shard['file']}: listed in the manifest but missing"]
    if tar_path.stat().st_size != shard["bytes"] or _sha256_of(tar_path) != shard["sha256"]:
        return [f"{shard['file']}: size or sha256 differs from the manifest (changed or truncated)"]
    problems = _check_index(tar_path, root / shard["index_file"])
    count = 0
    for key, fields in _iter_samples(tar_path):
        count += 1
        sample_problems, patient = _check_sample(shard, key, fields, deep)
        problems += sample_problems
        if key in keys:
            problems.append(f"{shard['file']}: key {key} also in {keys[key]}")
        keys[key] = shard["file"]
        if patient is not None:
            patients[shard["split"]].add(patient)
    if count != shard["samples"]:
        problems.append(f"{shard['file']}: {count} samples, manifest says {shard['samples']}")
    return problems


def _check_totals(manifest: dict, patients: dict[str, set[str]], counted: dict[str, int]) -> list[str]:
    problems = []
    for split in SPLITS:
        if counted[split] != manifest["counts"].get(split):
            problems.append(f"{MANIFEST_NAME}: {split} shards hold {counted[split]} samples, "
                            f"counts say {manifest['counts'].get(split)}")
        if len(patients[split]) != manifest["patients"].get(split):
            problems.append(f"{MANIFEST_NAME}: {split} has {len(patients[split])} patients, "
                            f"manifest says {manifest['patients'].get(split)}")
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            shared = sorted(patients[first] & patients[second])
            if shared:
                problems.append(f"patients in both {first} and {second}: {len(shared)} "
                                f"(e.g. {', '.join(shared[:3])})")
    return problems


def verify_shards(dir: Path, *, deep: bool = False, progress: bool = False) -> list[str]:  # noqa: A002
    """Problems found in the shard set at `dir` (see module docstring); empty means it is sound.
    `progress` shows a bar over the shards (the full set is 45 GB to re-hash)."""
    root = Path(dir)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
        shards = manifest["shards"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{root / MANIFEST_NAME}: missing or unreadable ({type(exc).__name__}: {exc})"]
    problems: list[str] = []
    patients: dict[str, set[str]] = defaultdict(set)
    counted: dict[str, int] = defaultdict(int)
    keys: dict[str, str] = {}
    for shard in tqdm(shards, unit="shard", desc="verifying", disable=not progress):
        problems += _check_shard(root, shard, deep, patients, keys)
        counted[shard["split"]] += shard["samples"]
    listed = {name for shard in shards for name in (shard["file"], shard["index_file"])}
    stray = sorted(p.name for p in root.iterdir() if SHARD_FILE.match(p.name) and p.name not in listed)
    problems += [f"{name}: shard file not listed in the manifest" for name in stray]
    if not sum(shard["samples"] for shard in shards):
        problems.append(f"{MANIFEST_NAME}: no samples in any shard: nothing to train on "
                        "(see the manifest's skipped list for why)")
    return problems + _check_totals(manifest, patients, counted)
