"""What a DICOM's intensity mapping does to the model's input: the training mapping against the
stored-min..max linear one that `cxr-sr upscale` once used.

    python -m benchmarks.dicom_mapping FILE.dcm [--reference DIR_OF_PNGS] [--scale 4]

For each mapping, the 8-bit image it gives (as `prep shard` would store it): gray-level
statistics, and the bicubic baseline of docs/contracts.md §5 on it (HR = that image whole, LR =
the project degradation). With ``--reference``, the same statistics of a folder of training-like
PNGs for comparison. Prints a markdown table.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def linear_min_max(stored: np.ndarray, monochrome1: bool) -> np.ndarray:
    """The superseded upscale mapping: stored min..max to [0, 1], inverted for MONOCHROME1."""
    low, high = float(stored.min()), float(stored.max())
    unit = (stored.astype(np.float64) - low) / max(high - low, 1.0)
    return 1.0 - unit if monochrome1 else unit


def _row(name: str, unit: np.ndarray, scale: int | None) -> str:
    from dist_train.degradation import bicubic_upsample, crop_to_scale, downsample
    from dist_train.metrics import psnr_per_image, ssim_per_image

    levels = np.round(np.clip(unit, 0.0, 1.0) * 255.0)
    p1, p50, p99 = np.percentile(levels, [1, 50, 99])
    clipped = 100.0 * float(np.mean((levels == 0) | (levels == 255)))
    row = (f"| {name} | {levels.mean():.1f} | {levels.std():.1f} | {p1:.0f} / {p50:.0f} / {p99:.0f} | "
           f"{clipped:.2f} |")
    if scale is None:
        return row + " - | - |"
    hr = torch.from_numpy(np.ascontiguousarray(crop_to_scale(levels / 255.0, scale)))[None, None].float()
    sr = bicubic_upsample(downsample(hr.clone(), scale), scale)
    psnr, ssim = float(psnr_per_image(sr, hr, scale)[0]), float(ssim_per_image(sr, hr, scale)[0])
    return row + f" {psnr:.2f} | {ssim:.4f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dicom", type=Path)
    parser.add_argument("--reference", type=Path, help="folder of PNGs: their statistics, for comparison")
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args(argv)

    from data_prep.image_io import read_gray8
    from export.image_io import read_image

    image = read_image(args.dicom)
    monochrome1 = str(image.dataset.PhotometricInterpretation).upper() == "MONOCHROME1"
    training = image.to_unit().astype(np.float64)
    superseded = linear_min_max(image.stored, monochrome1)
    prep_shard, _ = read_gray8(args.dicom)
    assert np.array_equal(np.round(training * 255.0), prep_shard), "upscale input differs from prep shard's"
    print(f"{args.dicom.name}: {image.width}x{image.height}, stored {image.stored.min()}..{image.stored.max()}; "
          + "; ".join(image.notes))
    difference = np.abs(np.round(training * 255.0) - np.round(superseded * 255.0))
    print(f"|difference| between the mappings: mean {difference.mean():.1f}, max {difference.max():.0f} gray levels\n")
    print("| mapping | mean | std | p1 / p50 / p99 | % at 0 or 255 | bicubic PSNR dB | bicubic SSIM |")
    print("|---|---|---|---|---|---|---|")
    print(_row("training (modality LUT + VOI window; now upscale's)", training, args.scale))
    print(_row("stored min..max linear (upscale before)", superseded, args.scale))
    if args.reference:
        pngs = sorted(args.reference.glob("*.png"))
        pooled = np.concatenate([read_gray8(path)[0].ravel() / 255.0 for path in pngs])
        print(_row(f"reference: the {len(pngs)} PNGs of {args.reference.name}, pooled", pooled, None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
