"""Argument parser and entry function of `cxr-sr export`; `cxr-sr upscale` is export/upscale_command.py."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.upscale_command import register as register_upscale  # noqa: F401 (python -m export)

EXPORT_FORMATS = ("torchscript", "pt2", "both")


def register_export(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds `export`: a run's generator to TorchScript (and/or a .pt2 AOTInductor package)."""
    parser = subparsers.add_parser(
        "export", help="export a run's generator as TorchScript (or a torch.export .pt2)",
        description="Export the EMA generator of a run's newest checkpoint following "
                    "docs/contracts.md §4, after a parity check against eager.")
    parser.add_argument("--run", type=Path, required=True, dest="run_dir", help="training run folder")
    parser.add_argument("--out", type=Path, required=True,
                        help="output file (.pt for TorchScript, .pt2 for --format pt2)")
    parser.add_argument("--raw", action="store_true", help="export the raw generator, not the EMA one")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint folder (default: the run's newest)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="torchscript",
                        help="both = TorchScript at --out and a .pt2 next to it")
    parser.add_argument("--device", default="cpu",
                        help="device the .pt2 package is compiled for (TorchScript runs anywhere)")
    parser.add_argument("--parity-images", type=Path, nargs="*", default=[],
                        help="real PNG/DICOM images (or folders) for the parity check (first 2 used)")
    parser.set_defaults(run=run_export)
    return parser


def _parity_images(paths: list[Path], limit: int = 2) -> list:
    import torch

    from export.image_io import read_image
    from export.inputs import collect_inputs

    return [torch.from_numpy(read_image(p).to_unit()) for p in collect_inputs(paths)[:limit]]


def _export_targets(out: Path, export_format: str) -> list[tuple[Path, str]]:
    """(file, format) pairs to write; ValueError when --out's suffix would make the file unloadable.

    `load_exported` picks the loader by suffix, so a .pt2 package must end in .pt2 and a
    TorchScript file must not.
    """
    is_pt2_name = out.suffix == ".pt2"
    if export_format == "pt2" and not is_pt2_name:
        raise ValueError(f"--format pt2 writes an AOTInductor package, which must be named *.pt2, not {out.name}")
    if export_format in ("torchscript", "both") and is_pt2_name:
        raise ValueError(f"--format {export_format} writes TorchScript at --out, which must not be named *.pt2 "
                         f"(use {out.with_suffix('.pt').name}, or --format pt2)")
    return {"torchscript": [(out, "torchscript")], "pt2": [(out, "pt2")],
            "both": [(out, "torchscript"), (out.with_suffix(".pt2"), "pt2")]}[export_format]


def run_export(args: argparse.Namespace) -> int:
    """Loads the checkpoint, exports, prints the parity summary; 1 on any failure."""
    from dist_train.checkpoint import CheckpointError, load_generator
    from export.meta import build_meta, generator_cost
    from export.parity import ParityError, real_inputs
    from export.wrapper import infer_scale

    try:
        targets = _export_targets(args.out, args.format)
        generator, info = load_generator(args.run_dir, ema=not args.raw, checkpoint=args.checkpoint)
    except (ValueError, CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    scale = infer_scale(generator)
    try:
        parity = real_inputs(_parity_images(args.parity_images), scale)
    except ValueError as exc:  # ImageDecodeError: one line naming the file
        print(f"error: {exc}", file=sys.stderr)
        return 1
    cost = generator_cost(generator)
    for target, export_format in targets:
        meta = build_meta(scale, info["config"]["model"], info["step"], info["metrics"],
                          weights=info["weights"], export_format=export_format, cost=cost)
        try:
            if export_format == "pt2":
                from export.pt2 import export_pt2

                report = export_pt2(generator, meta, target, parity, device=args.device)
            else:
                from export.torchscript import export_torchscript

                report = export_torchscript(generator, meta, target, parity)
        except ParityError as exc:
            print(f"error: {target}: {exc}", file=sys.stderr)
            return 1
        print(f"{target}: {export_format}, x{scale}, step {info['step']}; {report.summary()}")
    return 0
