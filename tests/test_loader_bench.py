"""`cxr-sr bench loader` writes the JSON RESULTS.md is built from (its figures are not checked here:
timings do not belong in tests)."""
from __future__ import annotations

import json

from benchmarks.loader import main
from test_loader_support import build_shard_set


def test_bench_loader_writes_both_backends(tmp_path, capsys):
    """Every backend x patches-per-image x cache setting measured on the same settings, with the
    per-patch and per-image keys RESULTS.md is built from; patches and images counted apart (two
    patches per image, so a mix-up shows)."""
    shards = build_shard_set(tmp_path)
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(["--shards", str(shards), "--batch", "4", "--patch", "32", "--k", "2", "--cache",
                 "none,decoded", "--workers", "1", "--groups", "1", "--json", str(out),
                 "--markdown", str(table)]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    settings = {(r["backend"], r["patches_per_image"], r["cache"]) for r in result["runs"]}
    assert settings == {(b, k, c) for b in ("dali", "torch") for k in (2,) for c in ("none", "decoded")}
    for run in result["runs"]:
        assert run["patches_per_s"] > 0 and run["cpu_s_per_patch"] >= 0
        assert run["patches"] == run["images"] * run["patches_per_image"] == 4 * run["patches_per_image"]
        assert run["lr_shape"] == [4, 1, 8, 8]
    assert (result["batch"], result["workers"]) == (4, 1)
    assert result["machine"] and "CPU ms/patch" in table.read_text()
