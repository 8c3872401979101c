"""The `cxr-sr` console script: one subcommand per line of COMMANDS.

Each entry names a module exposing ``register(subparsers)``, which adds its subcommand (with
``set_defaults(run=callable)``). Modules are imported only when their command is chosen, so
`cxr-sr --help` stays fast and a broken optional dependency breaks only its own command.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module providing register(), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("dist_train.train", "train the SRGAN (run under torchrun/deepspeed for several processes)"),
    "export": ("export.export_command", "export a run's generator as TorchScript (or a torch.export .pt2)"),
    "upscale": ("export.upscale_command", "upscale PNG/DICOM files or folders with an exported model"),
    "bench": ("benchmarks.cli", "benchmarks: throughput and quality against bicubic, loader, training"),
    "prep": ("data_prep.cli", "download, shard, verify and synthesise chest X-ray datasets"),
    "launch": ("launch.launcher_command", "run training under torchrun/deepspeed, or write a SLURM batch script"),
    "app": ("launch.app_command", "the Streamlit demo app: upload an X-ray, compare LR, bicubic and SR"),
    "demo": ("launch.demo_command", "the whole pipeline end to end on CPU (synth, shard, train, export, bench, report)"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("cxr-sr")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser for command `only`; the others appear in --help by name only."""
    parser = argparse.ArgumentParser(prog="cxr-sr", description="4x super-resolution of chest X-rays")
    parser.add_argument("--version", action="version", version=f"cxr-sr {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name != only:
            subparsers.add_parser(name, help=help_text, add_help=False)
            continue
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    return int(args.run(args) or 0)
