"""`cxr-sr bench loader` writes the JSON RESULTS.md is built from (its figures are not checked here:
timings do not belong in tests)."""
from __future__ import annotations

import json

from benchmarks.loader import main
from test_loader_support import build_shard_set


def test_bench_loader_writes_both_backends(tmp_path, capsys):
    """Both backends measured on the same settings, with the keys RESULTS.md is built from."""
    shards = build_shard_set(tmp_path)
    out = tmp_path / "bench.json"
    assert main(["--shards", str(shards), "--batch", "4", "--patch", "32", "--workers", "1",
                 "--warmup", "1", "--batches", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    for backend in ("dali", "torch"):
        assert result[backend]["images_per_s"] > 0 and result[backend]["cpu_s_per_image"] >= 0
        assert result[backend]["lr_shape"] == [4, 1, 8, 8]
    assert (result["batch"], result["patch"], result["workers"]) == (4, 32, 1)
    assert result["machine"]
