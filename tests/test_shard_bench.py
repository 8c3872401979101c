"""`cxr-sr bench shard` runs the real sharding and writes its JSON (figures are not checked here:
timings do not belong in tests)."""
from __future__ import annotations

import json
import subprocess
import sys

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
