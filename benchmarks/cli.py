"""`cxr-sr bench ...`: one parser whose subcommands come from the BENCHMARKS table.

A module in the table either exposes ``register(subparsers)`` (adding its own subcommand with
``set_defaults(run=callable)``) or the pair ``add_arguments(parser)`` / ``run(args) -> int``.
Modules must import nothing heavy at module level: all are imported to build the parser. One
that fails to import still appears, and says why when chosen, so it cannot break the others.
To add a benchmark, add one line to BENCHMARKS.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "throughput": ("benchmarks.throughput", "images/s, latency and memory of the model vs bicubic"),
    "quality": ("benchmarks.quality", "PSNR/SSIM/consistency of the model vs bicubic and lanczos"),
    "loader": ("benchmarks.loader", "images/s and CPU-s/image of the DALI and torch shard loaders"),
    "shard": ("benchmarks.shard_bench", "images/s and images per CPU-s of `prep shard` on a source"),
    "train": ("benchmarks.train_bench", "training patches/s per process and 1 -> 2 process scaling, DDP and DeepSpeed"),
    "discriminator": ("benchmarks.discriminator", "D trained alone: fresh-batch accuracy on HR vs bicubic patches"),
}


def _add(bench_subparsers: argparse._SubParsersAction, name: str, module_name: str, help_text: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        broken = bench_subparsers.add_parser(name, help=f"{help_text} (unavailable)")
        message = f"error: bench {name}: cannot import {module_name} ({exc})"
        broken.set_defaults(run=lambda args: print(message, file=sys.stderr) or 1)
        return
    if hasattr(module, "register"):
        module.register(bench_subparsers)
        return
    parser = bench_subparsers.add_parser(name, help=help_text, description=help_text)
    module.add_arguments(parser)
    parser.set_defaults(run=module.run)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds `bench` and every benchmark of BENCHMARKS under it."""
    parser = subparsers.add_parser("bench", help="benchmarks (JSON to stdout or --json FILE)",
                                   description="Benchmarks of cxr-sr against bicubic and of its parts.")
    bench_subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, (module_name, help_text) in BENCHMARKS.items():
        _add(bench_subparsers, name, module_name, help_text)
    parser.set_defaults(run=lambda args: parser.print_help() or 2)
    return parser
