"""`cxr-sr bench loader`: CPU cost per training patch of DALI and the torch twin, by patches per image.

Each (backend, patch size, patches per image, cache) runs in a fresh subprocess (so none inherits
another's threads or page cache warm-up in its CPU count): one warm-up group of batches, then
``--groups`` timed groups (a group is ``batch`` decoded images, ``k`` batches of patches). Reported
per run: ``patches_per_s`` (wall clock), ``cpu_s_per_patch`` and ``cpu_s_per_image`` (CPU seconds
of the process and all its worker processes, from /proc: the fair figure on a shared machine),
and ``cores_per_1000_patches_s``, the CPU cores that feed 1,000 patches/s at that cost.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_report import header, markdown_table
from data_prep.atomic import write_bytes_atomic

BACKENDS = ("dali", "torch")


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except FileNotFoundError:
                pass
    return found


def process_tree_cpu_s() -> dict[int, float]:
    """CPU seconds so far of this process and each live descendant (DataLoader workers)."""
    return {pid: _proc_cpu_s(pid) for pid in _descendants(os.getpid())}


def measure_backend(backend: str, shards: str, batch: int, patch: int, patches_per_image: int, cache: str,
                    workers: int, groups: int, device: str) -> dict:
    """Time ``groups`` groups of batches of one backend in this process, after one warm-up group."""
    import torch

    from dist_train.config import load_config
    from dist_train.data import build_train_loader

    torch.set_num_threads(1)  # the loaders' own workers/threads are what is measured
    cfg = load_config(None, [f"data.backend={backend}", f"data.shards={shards}",
                             f"data.batch_size={batch}", f"data.patch_px={patch}",
                             f"data.patches_per_image={patches_per_image}", f"data.cache={cache}",
                             "data.cache_max_mb=65536", f"data.workers={workers}", f"data.device={device}"])
    torch_device = torch.device("cuda" if device == "gpu" else "cpu")
    build_start = time.perf_counter()
    loader = build_train_loader(cfg, 0, 1, torch_device)  # with the cache: the whole decode
    build_s = time.perf_counter() - build_start
    batches = groups * patches_per_image
    try:
        for _ in range(patches_per_image):
            loader.next_batch()
        cpu_before = process_tree_cpu_s()
        start = time.perf_counter()
        for _ in range(batches):
            lr, _ = loader.next_batch()
        if torch_device.type == "cuda":
            torch.cuda.synchronize()
        wall_s = time.perf_counter() - start
        cpu_after = process_tree_cpu_s()
    finally:
        loader.close()
    # A process that started during the timed loop contributes all its CPU time.
    cpu_s = sum(cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after)
    patches = batches * batch
    images = patches // patches_per_image
    return {"backend": backend, "patch": patch, "patches_per_image": patches_per_image, "cache": cache,
            "patches_per_s": round(patches / wall_s, 1), "cpu_s_per_patch": round(cpu_s / patches, 6),
            "cpu_s_per_image": round(cpu_s / images, 5),
            "cores_per_1000_patches_s": round(1000 * cpu_s / patches, 2),
            "wall_s": round(wall_s, 3), "cpu_s": round(cpu_s, 3), "patches": patches, "images": images,
            "build_s": round(build_s, 2), "device": device, "lr_shape": list(lr.shape)}


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cxr-sr bench loader`; batch and workers default to default.yaml's."""
    from dist_train.config import load_config

    data = load_config("default").data
    parser.add_argument("--shards", required=True, help="shard set directory (cxr-sr prep shard)")
    parser.add_argument("--json", default=None, help="write the JSON here as well as to stdout")
    parser.add_argument("--markdown", default=None, help="also write the table here")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: dali,torch")
    parser.add_argument("--batch", type=int, default=data.batch_size,
                        help=f"batch size per process (default {data.batch_size}, default.yaml)")
    parser.add_argument("--patch", type=_ints, default=[data.patch_px],
                        help=f"HR patch sizes in px, comma-separated (default {data.patch_px}, default.yaml)")
    parser.add_argument("--k", type=_ints, default=[1, 4, 8, 16],
                        help="patches per image to measure, comma-separated (default 1,4,8,16)")
    parser.add_argument("--cache", default="none", help="comma-separated data.cache values: none,decoded")
    parser.add_argument("--workers", type=int, default=data.workers,
                        help="DataLoader workers (torch) = DALI CPU threads (dali) "
                             f"(default {data.workers}, default.yaml)")
    parser.add_argument("--groups", type=int, default=10,
                        help="timed groups per run (a group: batch images, k batches of patches)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: DALI decodes 'mixed' on the GPU; the twin copies to the GPU")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: child process


def _child(args: argparse.Namespace, backend: str, patch: int, k: int, cache: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.loader", "--one", f"{backend},{patch},{k},{cache}",
               "--shards", args.shards, "--batch", str(args.batch), "--workers", str(args.workers),
               "--groups", str(args.groups), "--device", args.device]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"bench loader: {backend} patch {patch} k {k} cache {cache} failed "
                         f"(exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


TABLE_COLUMNS = ["backend", "cache", "patch", "k", "patches/s", "CPU ms/patch", "CPU ms/image",
                 "cores per 1,000 patches/s"]


def run(args: argparse.Namespace) -> int:
    """Measure each setting in its own subprocess; print (and write) the JSON and the table."""
    if args.one:
        backend, patch, k, cache = args.one.split(",")
        print(json.dumps(measure_backend(backend, args.shards, args.batch, int(patch), int(k), cache,
                                         args.workers, args.groups, args.device)))
        return 0
    runs = [_child(args, backend, patch, k, cache) for cache in args.cache.split(",")
            for patch in args.patch for backend in args.backends.split(",") for k in args.k]
    result = {"runs": runs, "batch": args.batch, "workers": args.workers, "shards": str(args.shards),
              "timed_groups": args.groups, **header()}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_bytes_atomic(Path(args.json), (text + "\n").encode())
    table = markdown_table(TABLE_COLUMNS, [
        [r["backend"], r["cache"], r["patch"], r["patches_per_image"], r["patches_per_s"],
         1000 * r["cpu_s_per_patch"], 1000 * r["cpu_s_per_image"], r["cores_per_1000_patches_s"]]
        for r in runs])
    print(table, file=sys.stderr)
    if args.markdown:
        write_bytes_atomic(Path(args.markdown), (table + "\n").encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr-sr bench loader", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
