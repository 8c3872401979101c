"""`cxr-sr upscale`: its arguments and its run, for launch/cli.py's COMMANDS table.

Everything that can be checked before the first image is (options, output paths, the device and
the model), so that a bad command stops at once with one line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_REPORT = "upscale_report.json"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds `upscale`: an exported model over PNG/JPEG/TIFF/DICOM files and folders."""
    from export.upscale import OUTPUT_FORMATS, UpscaleSettings

    defaults = UpscaleSettings()
    parser = subparsers.add_parser(
        "upscale", help="upscale PNG/DICOM files or folders with an exported model",
        description="Upscale images with a TorchScript/.pt2 file of `cxr-sr export`. Writes one "
                    "file per input and a per-image report; exit code 1 if any input failed, 2 if "
                    "the model, the options or the output paths are bad.")
    parser.add_argument("--model", type=Path, default=None,
                        help="exported model (.pt or .pt2); default: the shipped default model "
                             "(export/models/cxr_sr_x4.pt, see its MODEL_CARD.md)")
    parser.add_argument("-i", "--input", type=Path, nargs="+", required=True, dest="inputs",
                        help="image files and folders (PNG, JPEG, TIFF, DICOM); never written to")
    parser.add_argument("-o", "--out-dir", type=Path, required=True,
                        help="output folder, outside every input folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
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
    parser.add_argument("--report", type=Path, help="per-image report, *.json or *.csv "
                        f"(default OUTDIR/{DEFAULT_REPORT})")
    parser.add_argument("--scale", type=int, default=4, help="the scale the model must have")
    parser.add_argument("--max-input-pixels", type=int, default=defaults.max_input_pixels)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def resolve_model(model: Path | None) -> Path:
    """The model file `upscale` loads: the one given with --model, else the shipped default
    (said in one line on stderr)."""
    if model is not None:
        return Path(model)
    from export.default_model import default_model_notice, default_model_path

    path = default_model_path()
    print(f"cxr-sr upscale: {default_model_notice()}", file=sys.stderr)
    return path


def _summary_line(counts: dict) -> str:
    line = f"{counts['ok']}/{counts['images']} upscaled, {counts['failed']} failed"
    if counts["skipped"]:
        line += f", {counts['skipped']} skipped (not images)"
    if counts["mean_consistency_psnr_db"] is not None:
        line += f"; mean consistency {counts['mean_consistency_psnr_db']:.2f} dB"
    return line


def run(args: argparse.Namespace) -> int:
    """0 when every input was upscaled, 1 when any failed (or none was found), 2 when the model,
    the options or the output paths are bad."""
    from export.inputs import check_output_paths
    from export.model_file import ModelFileError, load_exported
    from export.report import summary, write_report
    from export.upscale import Upscaler, UpscaleSettings

    report_path = args.report or args.out_dir / DEFAULT_REPORT
    try:
        settings = UpscaleSettings(tile_px=args.tile_px, overlap_px=args.overlap_px,
                                   batch_size=args.batch_size, output_format=args.output_format,
                                   data_consistency=args.data_consistency, dc_iterations=args.dc_iterations,
                                   max_input_pixels=args.max_input_pixels, progress=not args.no_progress)
        check_output_paths(args.inputs, args.out_dir, report_path)
        model = load_exported(resolve_model(args.model), args.device, expected_scale=args.scale)
    except (ValueError, ModelFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        results = Upscaler(model, args.out_dir, settings).run(args.inputs)
    except KeyboardInterrupt:
        print("error: interrupted; the files written so far are complete, no report written", file=sys.stderr)
        return 130
    counts = summary(results)
    print(_summary_line(counts), file=sys.stderr)
    try:
        write_report(report_path, results, model.meta)
    except OSError as exc:
        print(f"error: cannot write the report {report_path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"report: {report_path}", file=sys.stderr)
    if not counts["images"]:
        print("error: no image found in the inputs" + (f" ({counts['skipped']} file(s) skipped, "
              "listed in the report with the reason)" if counts["skipped"] else ""), file=sys.stderr)
    return 1 if counts["failed"] or not counts["images"] else 0
