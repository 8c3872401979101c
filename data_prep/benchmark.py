"""Sharding throughput (issue 3, item 6): images/s per core on a real source. Not a test.

    python -m data_prep.benchmark ../shared/nih-sample [--workers 1 2] [--repeat 3]

For each worker count, shards the source into a fresh temporary folder and reports the best of
`--repeat` runs: end-to-end images/s (catalog and metadata join included) and the write phase
alone (decode-verify, hash, tar, index), each also divided by the worker count. The first run
pays for imports and a cold page cache, so take the best, not the mean.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from data_prep.catalog import build_catalog
from data_prep.shard import shard_dataset
from data_prep.sources import open_source


def _one_run(source: Path, workers: int) -> tuple[float, float, int]:
    """(total seconds, catalog seconds, images written) of one fresh shard run."""
    started = time.perf_counter()
    build_catalog(open_source(source))
    catalog_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        manifest = shard_dataset(source, Path(scratch) / "out", workers=workers, progress=False,
                                 samples_per_shard=max(16, 312 // (2 * workers)))
        total_s = time.perf_counter() - started
    return total_s, catalog_s, manifest["counts"]["total"]


def benchmark(source: Path, workers_list: list[int], repeat: int) -> dict:
    """Best-of-`repeat` throughput per worker count, as a json-ready dict."""
    results = []
    for workers in workers_list:
        runs = [_one_run(source, workers) for _ in range(repeat)]
        total_s, catalog_s, images = min(runs)
        write_s = max(total_s - catalog_s, 1e-9)
        results.append({"workers": workers, "images": images, "total_s": round(total_s, 3),
                        "images_per_s": round(images / total_s, 1),
                        "images_per_s_per_core": round(images / total_s / workers, 1),
                        "write_phase_images_per_s_per_core": round(images / write_s / workers, 1)})
    return {"source": str(source), "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "results": results}


def main() -> None:
    """Command-line entry: print the benchmark as json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(benchmark(args.source, args.workers, args.repeat), indent=2))


if __name__ == "__main__":
    main()
