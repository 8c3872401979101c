"""Sharding throughput: images/s per core of `cxr-sr prep shard` on a real source.

    cxr-sr bench shard --source ../shared/nih-sample [--workers 1 2] [--repeat 3] [--json FILE]

For each worker count, shards the source into a fresh temporary folder and reports the best of
`--repeat` runs: wall-clock images/s end to end (catalog and metadata join included), divided by
the worker count, and images per CPU-second (this process, its workers and the `tar` processes
of wds2idx together), which is the per-core rate even on a machine that others are loading too.
The first run pays for imports and a cold page cache, so take the best, not the mean.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.bench_report import emit, header, markdown_table


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _catalog_cpu_s(source: Path) -> float:
    """CPU seconds of listing the source and joining the metadata (a fixed cost per run)."""
    from data_prep.catalog import build_catalog
    from data_prep.sources import open_source

    start = _cpu_s()
    build_catalog(open_source(source))
    return _cpu_s() - start


def _one_run(source: Path, workers: int, samples_per_shard: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, images written) of one fresh shard run."""
    from data_prep.shard import shard_dataset

    with tempfile.TemporaryDirectory() as scratch:
        cpu_start, started = _cpu_s(), time.perf_counter()
        manifest = shard_dataset(source, Path(scratch) / "out", workers=workers, progress=False,
                                 samples_per_shard=samples_per_shard)
        total_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu_start
    return total_s, cpu_s, manifest["counts"]["total"]


def manifest_size_hint(source: Path) -> int:
    """How many images the source holds (so every worker gets about two shards)."""
    from data_prep.catalog import build_catalog
    from data_prep.sources import open_source

    return len(build_catalog(open_source(source)).candidates)


def benchmark(source: Path, workers_list: list[int], repeat: int) -> dict:
    """Best-of-`repeat` throughput per worker count, as a json-ready dict."""
    # Both list the source; inside the timed runs they would count against sharding.
    n_images = manifest_size_hint(source)
    catalog_cpu_s = min(_catalog_cpu_s(source) for _ in range(repeat))
    results = []
    for workers in workers_list:
        samples_per_shard = max(16, n_images // (2 * workers))
        runs = [_one_run(source, workers, samples_per_shard) for _ in range(repeat)]
        total_s, cpu_s, images = min(runs)
        results.append({"workers": workers, "images": images, "wall_s": round(total_s, 3),
                        "cpu_s": round(cpu_s, 3), "images_per_s": round(images / total_s, 1),
                        "images_per_s_per_worker": round(images / total_s / workers, 1),
                        "images_per_cpu_s": round(images / cpu_s, 1),
                        "catalog_cpu_s": round(catalog_cpu_s, 3),
                        "images_per_cpu_s_without_catalog": round(images / (cpu_s - catalog_cpu_s), 1)})
    return {"header": header(), "source": str(source), "load_average_1min": os.getloadavg()[0],
            "results": results}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, required=True,
                        help="what `cxr-sr prep shard --source` takes (Kaggle zip or folder, or a folder of images)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    parser.add_argument("--repeat", type=int, default=3, help="runs per worker count; the best is kept")
    parser.add_argument("--json", type=Path, help="write the JSON here instead of stdout")
    parser.add_argument("--markdown", type=Path, help="also write the table here")


def run(args: argparse.Namespace) -> int:
    document = benchmark(args.source, args.workers, args.repeat)
    columns = ["workers", "images", "images/s", "images/s per worker", "images per CPU-s",
               "images per CPU-s without catalog"]
    rows = [[r["workers"], r["images"], r["images_per_s"], r["images_per_s_per_worker"], r["images_per_cpu_s"],
             r["images_per_cpu_s_without_catalog"]] for r in document["results"]]
    emit(document, markdown_table(columns, rows), args.json, args.markdown)
    return 0
