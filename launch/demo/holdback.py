"""The held-back images: the test split of a shard set, written out as PNG files for benchmarks.

The test split is patient-disjoint from training (docs/contracts.md §2), so these images were never seen.
"""
from __future__ import annotations

from pathlib import Path

from data_prep.atomic import write_bytes_atomic
from dist_train.data.shardset import load_split
from dist_train.data.shards_torch import read_png


def extract_test_split(shards: Path, out: Path, limit: int) -> list[Path]:
    """Writes up to ``limit`` test-split PNGs of ``shards`` to ``out`` (sorted by key); returns them.

    Raises ``ShardSetError`` (a ValueError) when the shard set has no test split to benchmark on.
    """
    refs = load_split(shards, "test").sample_refs()[:limit]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ref in refs:
        target = out / f"{Path(ref.key).name}.png"
        write_bytes_atomic(target, read_png(ref))
        written.append(target)
    return sorted(written)
