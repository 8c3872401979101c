"""`manifest.json` of a shard set: what verify checks and what the loader reads (docs/contracts.md §2).

Deterministic by construction (no timestamps, sorted keys): equal input and settings give a
byte-identical manifest, like the shards it describes.
"""
from __future__ import annotations

from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from data_prep.atomic import write_json_atomic
from data_prep.catalog import Catalog
from data_prep.split import SPLITS

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "cxr-sr webdataset shard set"


def tool_version() -> str:
    """The installed cxr-sr version (or 'unknown' when running from an uninstalled checkout)."""
    try:
        return metadata.version("cxr-sr")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_manifest(records: list[dict[str, Any]], *, catalog: Catalog, source: dict,
                   settings: dict, plan_digest: str) -> dict[str, Any]:
    """Assemble the manifest from the per-shard records (in plan order)."""
    samples = Counter()
    patients: dict[str, set[str]] = {split: set() for split in SPLITS}
    conversions: Counter = Counter()
    skipped = list(catalog.skipped)
    shards = []
    for record in records:
        samples[record["split"]] += record["samples"]
        patients[record["split"]].update(record["patients"])
        conversions.update(record["conversions"])
        skipped.extend(record["skipped"])
        if record["samples"]:
            shards.append({key: record[key] for key in
                           ("file", "index_file", "split", "samples", "bytes", "sha256")})
    skip_reasons = Counter(_reason_kind(s["reason"]) for s in skipped)
    return {
        "format": FORMAT_NAME, "format_version": settings["format_version"],
        "tool": {"name": "cxr-sr data_prep", "version": tool_version()},
        "source": {**source, "metadata_file": catalog.metadata_file,
                   "official_test_list": catalog.official_test is not None},
        "settings": settings, "plan_digest": plan_digest,
        "counts": {**{split: samples[split] for split in SPLITS}, "total": sum(samples.values()),
                   "skipped": len(skipped), "metadata_rows_without_image": catalog.rows_without_image},
        "patients": {split: len(patients[split]) for split in SPLITS},
        "conversions": dict(sorted(conversions.items())),
        "shards": shards,
        "skipped": sorted(skipped, key=lambda s: s["name"]),
        "skipped_by_reason": dict(sorted(skip_reasons.items())),
        "metadata_rows_without_image": {"count": catalog.rows_without_image,
                                        "examples": catalog.rows_without_image_examples},
    }


def _reason_kind(reason: str) -> str:
    """The reason up to its first parenthesis: 'truncated PNG', 'unexpected size 512x512'..."""
    return reason.split(" (")[0]


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write `out/manifest.json` atomically (this is the last file of a shard run)."""
    write_json_atomic(Path(out) / MANIFEST_NAME, manifest)


def summary_line(manifest: dict[str, Any]) -> str:
    """One line with the split counts, for the CLI."""
    counts, patients = manifest["counts"], manifest["patients"]
    parts = [f"{split} {counts[split]} images / {patients[split]} patients" for split in SPLITS]
    return (f"{'; '.join(parts)}; {len(manifest['shards'])} shards; {counts['skipped']} skipped; "
            f"{counts['metadata_rows_without_image']} metadata rows without an image")
