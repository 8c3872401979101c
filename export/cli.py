"""Argument parsers and entry functions of `cxr-sr export` and `cxr-sr upscale`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    from export.meta import build_meta
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
    for target, export_format in targets:
        meta = build_meta(scale, info["config"]["model"], info["step"], info["metrics"],
                          weights=info["weights"], export_format=export_format)
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


def register_upscale(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds `upscale`: an exported model over PNG/DICOM files and folders."""
    from export.upscale import OUTPUT_FORMATS, UpscaleSettings

    defaults = UpscaleSettings()
    parser = subparsers.add_parser(
        "upscale", help="upscale PNG/DICOM files or folders with an exported model",
        description="Upscale images with a TorchScript/.pt2 file of `cxr-sr export`. Writes one "
                    "file per input and a per-image report; exit code 1 if any input failed.")
    parser.add_argument("--model", type=Path, required=True, help="exported model (.pt or .pt2)")
    parser.add_argument("-i", "--input", type=Path, nargs="+", required=True, dest="inputs",
                        help="PNG/DICOM files and folders")
    parser.add_argument("-o", "--out-dir", type=Path, required=True, help="output folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="images or tiles per forward pass")
    parser.add_argument("--tile", type=int, default=defaults.tile_px, dest="tile_px",
                        help="tile side in input px for larger images; 0 = no tiling")
    parser.add_argument("--overlap", type=int, default=defaults.overlap_px, dest="overlap_px",
                        help="context and blend width between tiles, input px (even)")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="auto",
                        help="auto: DICOM for DICOM input, PNG otherwise")
    parser.add_argument("--data-consistency", action="store_true",
                        help="adjust SR so that its bicubic downsample equals the input")
    parser.add_argument("--dc-iterations", type=int, default=defaults.dc_iterations)
    parser.add_argument("--report", type=Path, help="per-image report, .json or .csv "
                        "(default OUTDIR/upscale_report.json)")
    parser.add_argument("--scale", type=int, default=4, help="the scale the model must have")
    parser.add_argument("--max-input-pixels", type=int, default=defaults.max_input_pixels)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_upscale)
    return parser


def run_upscale(args: argparse.Namespace) -> int:
    """0 when every input was upscaled, 1 when any failed, 2 when the model or options are bad."""
    from export.model_file import ModelFileError, load_exported
    from export.report import summary, write_report
    from export.upscale import Upscaler, UpscaleSettings

    try:
        settings = UpscaleSettings(tile_px=args.tile_px, overlap_px=args.overlap_px,
                                   batch_size=args.batch_size, output_format=args.output_format,
                                   data_consistency=args.data_consistency, dc_iterations=args.dc_iterations,
                                   max_input_pixels=args.max_input_pixels, progress=not args.no_progress)
        model = load_exported(args.model, args.device, expected_scale=args.scale)
    except (ValueError, ModelFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = Upscaler(model, args.out_dir, settings).run(args.inputs)
    report_path = args.report or args.out_dir / "upscale_report.json"
    write_report(report_path, results, model.meta)
    counts = summary(results)
    consistency = counts["mean_consistency_psnr_db"]
    print(f"{counts['ok']}/{counts['images']} upscaled, {counts['failed']} failed; "
          f"mean consistency {consistency:.2f} dB" if consistency is not None else
          f"{counts['ok']}/{counts['images']} upscaled, {counts['failed']} failed", file=sys.stderr)
    print(f"report: {report_path}", file=sys.stderr)
    return 1 if counts["failed"] or not results else 0
