"""`cxr-sr bench shard` runs the real sharding and writes its JSON (figures are not checked here:
timings do not belong in tests)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT_ROOT


def test_bench_shard_counts_every_image_for_each_worker_count(synth_images, tmp_path):
    """Each worker count shards the whole source (all 16 images) and reports per-core figures."""
    out = tmp_path / "shard.json"
    result = subprocess.run([sys.executable, "-m", "launch", "bench", "shard", "--source", str(synth_images),
                             "--workers", "1", "2", "--repeat", "1", "--json", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert [r["workers"] for r in document["results"]] == [1, 2]
    assert all(r["images"] == 16 and r["images_per_cpu_s"] > 0 for r in document["results"])
    assert "bench shard --source" in document["header"]["command"] and document["header"]["machine"]["cpu_cores"]
    assert "images per CPU-s" in result.stderr  # the table


def test_benchmark_lists_the_source_once_outside_the_timed_runs(tmp_path: Path, monkeypatch) -> None:
    """Listing the source inside every timed run would charge the catalog twice to sharding, and
    re-measuring the catalog per worker count would skew the figures: it is listed once."""
    import data_prep.catalog
    import data_prep.shard  # bound to the real build_catalog before the patch below
    from benchmarks.shard_bench import benchmark
    from data_prep.synth import make_synthetic

    source = make_synthetic(tmp_path / "synth", 6, seed=0, size_px=64)
    listings = []
    original = data_prep.catalog.build_catalog
    monkeypatch.setattr(data_prep.catalog, "build_catalog", lambda *a, **k: listings.append(1) or original(*a, **k))
    report = benchmark(source, [1, 1], repeat=2)
    assert [r["images"] for r in report["results"]] == [6, 6]
    assert len(listings) == 1 + 2  # the size hint once, the catalog cost best of `repeat`
