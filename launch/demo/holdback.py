"""The held-back images: the test split of a shard set, written out as PNG files for benchmarks.

The test split is patient-disjoint from training (CONTRACTS §2), so these images were never seen.
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

from data_prep.manifest import MANIFEST_NAME


def extract_test_split(shards: Path, out: Path, limit: int) -> list[Path]:
    """Writes up to ``limit`` test-split PNGs of ``shards`` to ``out`` (sorted by key); returns them."""
    manifest = json.loads((Path(shards) / MANIFEST_NAME).read_text())
    tars = sorted(entry["file"] for entry in manifest["shards"] if entry["split"] == "test")
    if not tars:
        raise ValueError(f"{shards}: the shard set has no test split to benchmark on")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in tars:
        with tarfile.open(Path(shards) / name) as archive:
            for member in archive:
                if not member.name.endswith(".png"):
                    continue
                target = out / Path(member.name).name
                data = archive.extractfile(member)
                assert data is not None
                tmp = target.with_name(target.name + ".tmp")
                tmp.write_bytes(data.read())
                tmp.replace(target)
                written.append(target)
                if len(written) == limit:
                    return sorted(written)
    return sorted(written)
