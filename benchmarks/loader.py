"""`cxr-sr bench loader`: DALI against the torch twin on the same shards, cores and batches.

Each backend runs in a fresh subprocess (so neither inherits the other's threads or page cache
warm-up in its CPU count): warm-up batches, then timed batches. Reported per backend:
``images_per_s`` (wall clock) and ``cpu_s_per_image`` (CPU seconds of the process and all its
worker processes, from /proc), the fair figure on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_report import header
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


def measure_backend(backend: str, shards: str, batch: int, patch: int, workers: int,
                    warmup: int, batches: int, device: str) -> dict:
    """Time ``batches`` batches of one backend in this process (after ``warmup`` batches)."""
    import torch

    from dist_train.config import load_config
    from dist_train.data import build_train_loader

    torch.set_num_threads(1)  # the loaders' own workers/threads are what is measured
    cfg = load_config(None, [f"data.backend={backend}", f"data.shards={shards}",
                             f"data.batch_size={batch}", f"data.patch_px={patch}",
                             f"data.workers={workers}", f"data.device={device}"])
    torch_device = torch.device("cuda" if device == "gpu" else "cpu")
    loader = build_train_loader(cfg, 0, 1, torch_device)
    try:
        for _ in range(warmup):
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
    images = batches * batch
    return {"images_per_s": round(images / wall_s, 2), "cpu_s_per_image": round(cpu_s / images, 5),
            "wall_s": round(wall_s, 3), "cpu_s": round(cpu_s, 3), "images": images,
            "device": device, "lr_shape": list(lr.shape)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cxr-sr bench loader`; batch, patch and workers default to default.yaml's."""
    from dist_train.config import load_config

    data = load_config("default").data
    parser.add_argument("--shards", required=True, help="shard set directory (cxr-sr prep shard)")
    parser.add_argument("--json", default=None, help="write the JSON here as well as to stdout")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: dali,torch")
    parser.add_argument("--batch", type=int, default=data.batch_size,
                        help=f"batch size per process (default {data.batch_size}, default.yaml)")
    parser.add_argument("--patch", type=int, default=data.patch_px,
                        help=f"HR patch in px (default {data.patch_px}, default.yaml)")
    parser.add_argument("--workers", type=int, default=data.workers,
                        help="DataLoader workers (torch) = DALI CPU threads (dali) "
                             f"(default {data.workers}, default.yaml)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--batches", type=int, default=20, help="timed batches")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: DALI decodes 'mixed' on the GPU; the twin copies to the GPU")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: child process


def run(args: argparse.Namespace) -> int:
    """Measure each backend in its own subprocess; print (and write) the JSON."""
    settings = (args.shards, args.batch, args.patch, args.workers, args.warmup, args.batches, args.device)
    if args.one:
        print(json.dumps(measure_backend(args.one, *settings)))
        return 0
    result: dict = {}
    for backend in args.backends.split(","):
        command = [sys.executable, "-m", "benchmarks.loader", "--one", backend, "--shards", args.shards,
                   "--batch", str(args.batch), "--patch", str(args.patch), "--workers",
                   str(args.workers), "--warmup", str(args.warmup), "--batches", str(args.batches),
                   "--device", args.device]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"bench loader: backend {backend} failed (exit {done.returncode})")
        result[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    if "dali" in result and "torch" in result and result["dali"]["cpu_s_per_image"] > 0:
        # CPU time is counted in clock ticks (10 ms): a very short run can read 0.
        result["dali_vs_torch_cpu_efficiency"] = round(
            result["torch"]["cpu_s_per_image"] / result["dali"]["cpu_s_per_image"], 2)
    result.update(batch=args.batch, patch=args.patch, workers=args.workers,
                  shards=str(args.shards), timed_batches=args.batches, **header())
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_bytes_atomic(Path(args.json), (text + "\n").encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr-sr bench loader", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
