"""`cxr-sr bench quality`: docs/contracts.md §5 for the model, bicubic and lanczos.

Each HR image (PNG/DICOM) is centre-cropped to ``--crop-px`` (a multiple of the scale), degraded
with the project's one degradation, and restored by every method; PSNR, SSIM and the consistency
figure and sharpness (the high-frequency energy ratio: SR's spectral energy above the LR Nyquist
frequency over HR's, 1.0 = as much fine detail as the original) come from dist_train.metrics
(the same code as validation). Per-image values, the mean
and a 95% Student-t interval over images go to JSON and a markdown table; a PNG figure shows
crops side by side with error maps.
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any

BASELINES = ("bicubic", "lanczos")
FIGURES = ("psnr_db", "ssim", "consistency_psnr_db", "hf_energy_ratio")
# two-sided 95% Student-t quantiles for 1..30 degrees of freedom; 1.96 beyond
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("quality", help="PSNR/SSIM/consistency of the model vs bicubic and lanczos",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", required=True,
                        help="TorchScript or .pt2 file(s) of `cxr-sr export`; several are measured side by side")
    parser.add_argument("--label", nargs="+",
                        help="one name per --model for the tables (default: 'model' for one, else the file stems)")
    parser.add_argument("-i", "--images", type=Path, nargs="+", required=True, help="HR PNG/DICOM files or folders")
    parser.add_argument("--limit", type=int, default=0, help="use the first N images (0 = all)")
    parser.add_argument("--crop-px", type=int, default=1024, help="HR centre crop side (0 = whole image)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=256, help="LR tile px for the model (0 = whole image; else at least the 32 px overlap)")
    parser.add_argument("--figure", type=Path, help="PNG figure of crops and error maps")
    parser.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.set_defaults(run=run)
    return parser


def mean_interval(values: list[float]) -> dict[str, float | None]:
    """Mean and the half-width of its 95% Student-t interval (None for a single value)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": None, "ci95": None, "n": 0}
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return {"mean": mean, "ci95": None, "n": 1}
    t = _T95[len(finite) - 2] if len(finite) - 1 <= len(_T95) else 1.96
    return {"mean": mean, "ci95": t * statistics.stdev(finite) / math.sqrt(len(finite)), "n": len(finite)}


def _lanczos(lr, scale: int):
    """PIL's Lanczos on float32 pixels (mode F), so no 8-bit rounding happens before the metric."""
    import numpy as np
    import torch
    from PIL import Image

    images = [Image.fromarray(a[0].numpy().astype(np.float32), mode="F") for a in lr]
    up = [np.asarray(im.resize((im.width * scale, im.height * scale), Image.LANCZOS)) for im in images]
    return torch.from_numpy(np.stack(up)[:, None]).clamp(0, 1)


def _restore(model, lr, scale: int, tile_px: int):
    """The model's SR of an 1 x 1 x h x w LR batch, tiled when larger than a tile."""
    import torch

    from export.tiling import upscale_image

    return torch.from_numpy(upscale_image(model, lr[0, 0].numpy(), scale, tile_px))[None, None]


def centre_crop(image, crop_px: int, scale: int):
    """The protocol's HR: ``dist_train.degradation.crop_to_scale``."""
    from dist_train.degradation import crop_to_scale

    return crop_to_scale(image, scale, crop_px)


def evaluate_images(args: argparse.Namespace, failed: list[str] | None = None) -> tuple[list[dict[str, Any]], list[tuple]]:
    """Per-image figures for every method, and the tensors the figure needs (first 3 images).

    An image that cannot be read or restored is left out with a one-line error on stderr (and
    appended to `failed`); the rest are still measured.
    """
    import sys

    import torch

    from dist_train.degradation import bicubic_upsample, downsample
    from dist_train.metrics import consistency_psnr, high_frequency_energy_ratio, psnr_per_image, ssim_per_image
    from export.image_io import read_image
    from export.inputs import collect_inputs
    from export.model_file import ModelOutputError, ModelRunError, load_exported

    models = {label: load_exported(path, args.device) for label, path in zip(model_labels(args), args.model)}
    scales = {model.scale for model in models.values()}
    if len(scales) > 1:
        raise ValueError(f"the models have different scales {sorted(scales)}: compare models of one scale")
    scale = scales.pop()
    paths = collect_inputs(args.images)
    paths = paths[: args.limit] if args.limit else paths
    rows, kept = [], []
    for path in paths:
        try:
            hr = centre_crop(torch.from_numpy(read_image(path).to_unit()), args.crop_px, scale)
            if min(hr.shape) < 8 * scale:
                raise ValueError(f"{path}: {hr.shape[1]}x{hr.shape[0]} px after the crop; "
                                 f"at least {8 * scale} px per side needed")
            hr = hr[None, None]
            lr = downsample(hr, scale)
            restored = {}
            for label, model in models.items():
                restored[label] = _restore(model, lr, scale, args.tile)
                model.check_output(restored[label])
        except (ValueError, ModelRunError, ModelOutputError, MemoryError) as exc:
            message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
            print(f"error: {message}", file=sys.stderr)
            if failed is not None:
                failed.append(message)
            continue
        height, width = hr.shape[-2:]
        outputs = restored | {"bicubic": bicubic_upsample(lr, scale).clamp(0, 1), "lanczos": _lanczos(lr, scale)}
        row: dict[str, Any] = {"image": str(path), "hr_size": f"{width}x{height}"}
        for method, sr in outputs.items():
            row[method] = {"psnr_db": float(psnr_per_image(sr, hr, scale)[0]),
                           "ssim": float(ssim_per_image(sr, hr, scale)[0]),
                           "consistency_psnr_db": float(consistency_psnr(sr, lr, scale)[0]),
                           "hf_energy_ratio": float(high_frequency_energy_ratio(sr, hr, scale, scale)[0])}
        rows.append(row)
        if len(kept) < 3:
            kept.append((path.name, hr, outputs))
    return rows, kept


def model_labels(args: argparse.Namespace) -> list[str]:
    """The table name of each ``--model``: ``--label``, else "model" for one file, else file stems."""
    if args.label:
        if len(args.label) != len(args.model) or len(set(args.label)) != len(args.label):
            raise ValueError(f"--label: give {len(args.model)} distinct names, one per --model")
        if set(args.label) & set(BASELINES):
            raise ValueError(f"--label: {', '.join(BASELINES)} name the baselines; choose other names")
        return list(args.label)
    if len(args.model) == 1:
        return ["model"]
    stems = [path.stem for path in args.model]
    if len(set(stems)) != len(stems):
        raise ValueError("--model: two files share a name; give --label NAME for each")
    return stems


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    methods = [key for key in rows[0] if isinstance(rows[0][key], dict)]  # the models, then the baselines
    return {method: {figure: mean_interval([r[method][figure] for r in rows]) for figure in FIGURES}
            for method in methods}


def table(summary: dict[str, Any]) -> str:
    from benchmarks.bench_report import markdown_table

    def cell(stat: dict[str, float | None], digits: int) -> str:
        if stat["mean"] is None:
            return "-"
        ci = f" ± {stat['ci95']:.{digits}f}" if stat["ci95"] is not None else ""
        return f"{stat['mean']:.{digits}f}{ci}"

    rows = [[method, cell(s["psnr_db"], 2), cell(s["ssim"], 4), cell(s["consistency_psnr_db"], 2),
             cell(s["hf_energy_ratio"], 3), s["psnr_db"]["n"]] for method, s in summary.items()]
    return markdown_table(["method", "PSNR dB (95% CI)", "SSIM (95% CI)", "consistency dB (95% CI)",
                           "HF energy ratio (95% CI)", "images"], rows)


def run(args: argparse.Namespace) -> int:
    import sys

    from benchmarks.bench_report import emit, header
    from export.model_file import ModelFileError

    failed: list[str] = []
    try:
        rows, kept = evaluate_images(args, failed)
    except (ModelFileError, ValueError) as exc:  # the model or --device: nothing can be measured
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"error: no image measured in {' '.join(map(str, args.images))}"
              + (f" ({len(failed)} failed)" if failed else ""), file=sys.stderr)
        return 1
    summary = summarise(rows)
    models = {label: str(path) for label, path in zip(model_labels(args), args.model)}
    document = {"header": header(), "settings": {"model": models if len(models) > 1 else str(args.model[0]),
                                                 "crop_px": args.crop_px,
                                                 "protocol": "docs/contracts.md §5"},
                "summary": summary, "images": rows}
    if args.figure is not None:
        from benchmarks.quality_figure import write_figure

        write_figure(args.figure, kept)
        document["figure"] = str(args.figure)
    if failed:
        document["failed"] = failed
    emit(document, table(summary), args.json, args.markdown)
    return 1 if failed else 0
