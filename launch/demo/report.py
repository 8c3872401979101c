"""The demo's summary table (console and report) and ``report.md`` with its figures.

Numbers come from the benchmark JSON files the earlier steps wrote and from the step markers
(timings, C++ result); the figures are drawn by ``launch.demo.figures``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.bench_report import markdown_table
from benchmarks.quality import centre_crop
from data_prep.atomic import write_bytes_atomic
from launch.demo.figures import (Restoration, comparison_figure, consistency_figure, loss_figures,
                                 throughput_figure)
from launch.demo.pipeline import QUALITY_TILE_PX, RADIOGRAPH_NAME, DemoPaths
from launch.demo.settings import DemoSettings
from launch.demo.steps import read_marker

DATASETS = {"holdback": "held-back test split", "radiograph": f"real radiograph {RADIOGRAPH_NAME}"}
THROUGHPUT_OF = {"model": "torchscript", "bicubic": "bicubic_torch"}


def _read(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def restore(model, path: Path, crop_px: int, name: str) -> Restoration:
    """HR (centre crop), its LR by the project's degradation, bicubic and the model's SR (as `bench quality`)."""
    import torch

    from dist_train.degradation import bicubic_upsample, downsample
    from export.image_io import read_image
    from export.tiling import upscale_image

    hr = torch.from_numpy(centre_crop(read_image(path).to_unit(), crop_px, model.scale).copy())[None, None]
    lr = downsample(hr, model.scale)
    return Restoration(name, lr[0, 0].numpy(), bicubic_upsample(lr, model.scale).clamp(0, 1)[0, 0].numpy(),
                       upscale_image(model, lr[0, 0].numpy(), model.scale, QUALITY_TILE_PX), hr[0, 0].numpy(),
                       model.scale)


def write_figures(settings: DemoSettings, paths: DemoPaths, radiograph: Path) -> dict[str, Path]:
    """Every figure of the report under ``paths.figures``; returns name -> PNG path."""
    from export.model_file import load_exported

    paths.figures.mkdir(parents=True, exist_ok=True)
    model = load_exported(paths.model)
    first = sorted(paths.holdback.glob("*.png"))[0]
    rows = [restore(model, first, settings.holdback_crop_px, f"held-back {first.stem}"),
            restore(model, radiograph, settings.dicom_crop_px, RADIOGRAPH_NAME)]
    figures = {"comparison": comparison_figure(paths.figures / "comparison.png", rows, settings.crop_px)}
    curves = loss_figures(paths.figures, paths.run, settings.pretrain_steps)
    figures["loss_curves"], figures["val_psnr"] = curves
    figures["throughput"] = throughput_figure(paths.figures / "throughput.png", _read(paths.bench / "throughput.json"))
    qualities = {dataset: _read(paths.bench / f"quality_{dataset}.json") for dataset in DATASETS}
    figures["consistency"] = consistency_figure(paths.figures / "consistency.png", qualities, rows)
    return figures


def _mean(summary: dict, method: str, figure: str) -> float | None:
    return summary["summary"].get(method, {}).get(figure, {}).get("mean")


def summary_table(paths: DemoPaths) -> str:
    """Markdown: per method, PSNR/SSIM/consistency on both datasets and images/s."""
    qualities = {dataset: _read(paths.bench / f"quality_{dataset}.json") for dataset in DATASETS}
    throughput = _read(paths.bench / "throughput.json")
    rows = []
    for method in ("model", "bicubic", "lanczos"):
        row: list[Any] = ["model (SR)" if method == "model" else method]
        for dataset in DATASETS:
            row += [_mean(qualities[dataset], method, figure) for figure in ("psnr_db", "ssim", "consistency_psnr_db")]
        best = throughput["best_batch"].get(THROUGHPUT_OF.get(method, ""), {})
        row.append(best.get("images_per_s"))
        rows.append(row)
    counts = {d: qualities[d]["summary"]["model"]["psnr_db"]["n"] for d in DATASETS}
    columns = ["method", f"held-back PSNR dB ({counts['holdback']} img)", "held-back SSIM", "held-back consistency dB",
               f"{RADIOGRAPH_NAME} PSNR dB", f"{RADIOGRAPH_NAME} SSIM", f"{RADIOGRAPH_NAME} consistency dB",
               f"images/s ({throughput['settings']['lr_px']}->{throughput['settings']['out_px']} px, CPU)"]
    return markdown_table(columns, rows)


def default_model_table(paths: DemoPaths) -> str:
    """Markdown: the shipped default model beside the demo's model and bicubic, per real dataset."""
    datasets = [("radiograph", f"{RADIOGRAPH_NAME}"), ("realxray", "../shared/realxray")]
    rows = []
    for dataset, label in datasets:
        default_json = paths.bench / f"quality_default_{dataset}.json"
        if not default_json.is_file():
            continue
        default, demo = _read(default_json), _read(paths.bench / f"quality_{dataset}.json")
        n = default["summary"]["model"]["psnr_db"]["n"]
        for name, document, method in (("shipped default model", default, "model"),
                                       ("this demo's model", demo, "model"), ("bicubic", default, "bicubic"),
                                       ("lanczos", default, "lanczos")):
            rows.append([f"{label} ({n} img)", name, _mean(document, method, "psnr_db"),
                         _mean(document, method, "ssim"), _mean(document, method, "consistency_psnr_db")])
    return markdown_table(["images", "method", "PSNR dB", "SSIM", "consistency dB"], rows)


def _markers(settings: DemoSettings, paths: DemoPaths) -> dict[str, dict[str, Any]]:
    """The completion markers of the steps, in pipeline order."""
    from launch.demo.pipeline import build_steps

    records = {step.name: read_marker(paths.out, step.name) for step in build_steps(settings, paths)}
    return {name: record for name, record in records.items() if record is not None}


def _cpp_line(cpp: dict[str, Any]) -> str:
    if "skipped" in cpp:
        return f"skipped: {cpp['skipped']}"
    return (f"`{cpp.get('binary')}` upscaled a held-back LR image to {cpp.get('size')} px; "
            f"max difference to Python {cpp.get('max_abs_diff_levels')} gray levels")


def _introduction(settings: DemoSettings, paths: DemoPaths) -> str:
    """What was run: data, training, protocol, the two benchmark sets."""
    def crop(px: int) -> str:
        return f"{px} px centre crops" if px else "whole images"

    source = settings.images or f"{settings.n_images} synthetic phantoms ({settings.size_px} px, `prep synth`)"
    return f"""Data: {source}, sharded into patient-disjoint train/val/test splits (`{paths.shards.name}/`).
Training: {settings.nproc} processes through `cxr-sr launch --launcher torchrun` (DDP over gloo, DALI
CPU loader), {settings.pretrain_steps} PSNR-phase steps then {settings.gan_steps} GAN-phase steps
(tiny CPU model), EMA weights exported as TorchScript.
Quality protocol: docs/contracts.md §5 (uint8, scale-wide border crop, per image then averaged);
LR = antialiased bicubic downsampling of HR (§3). Held-back images: the test split, whose patients
were never trained on, as {crop(settings.holdback_crop_px)}. Real radiograph: `{RADIOGRAPH_NAME}`
(pydicom-data, Philips CR PA chest, MONOCHROME1 15-bit, read through pydicom), as
{crop(settings.dicom_crop_px)}."""


def write_report(settings: DemoSettings, paths: DemoPaths) -> Path:
    """``report.md``: the table, the figures and where everything is; written atomically."""
    markers = _markers(settings, paths)
    figures = {name: Path(path) for name, path in markers.get("figures", {}).get("results", {}).get("figures", {}).items()}
    relative = {name: path.relative_to(paths.out) for name, path in figures.items()}
    cpp_line = _cpp_line(markers.get("cpp", {}).get("results", {}))
    timings = markers_table(markers)
    throughput_md = (paths.bench / "throughput.md").read_text().split("\n\n", 3)[-1]
    text = f"""# cxr-sr demo report

{_introduction(settings, paths)}

## Summary

{summary_table(paths)}

Consistency = PSNR between the bicubic downsample of the output and the LR input (higher = the
output explains its input better). A tiny model trained for minutes on CPU is expected to beat
bicubic only slightly; the full recipe (`--config default`) is for GPUs.

## The shipped default model

`cxr-sr upscale` and `cxr-sr app` use it when no `--model` is given (export/models/MODEL_CARD.md:
CompactSR trained on the 312-image NIH sample), measured here on {settings.dicom_crop_px} px centre crops
of real images beside the model this demo trained on phantoms:

{default_model_table(paths)}

## Crops and error maps

![LR, bicubic, SR, HR crops and error maps]({relative.get('comparison')})

Columns: LR (nearest-upscaled), bicubic, SR, HR, |bicubic-HR| x8, |SR-HR| x8, and where SR is
closer to HR than bicubic (blue) or further from it (red).
Per-method figures of `bench quality`: [held-back](bench/quality_holdback.png),
[radiograph](bench/quality_radiograph.png).

## Training

![training losses]({relative.get('loss_curves')})
![validation PSNR]({relative.get('val_psnr')})

Tensorboard: `tensorboard --logdir {paths.run / 'tensorboard'}`; validation rows in
`{paths.run / 'metrics.csv'}`.

## Throughput

![throughput]({relative.get('throughput')})

{throughput_md.strip()}

## Consistency

![consistency]({relative.get('consistency')})

## C++ example

{cpp_line}

## Steps

{timings}

## Files

- run: `{paths.run}`
- model: `{paths.model}`
- benchmark JSON: `{paths.bench}`
- logs: `{paths.out / 'logs'}`
"""
    write_bytes_atomic(paths.report, text.encode())
    return paths.report


def markers_table(markers: dict[str, dict[str, Any]]) -> str:
    """Seconds per step."""
    rows = [[name, record.get("seconds"), record.get("finished")] for name, record in markers.items()]
    return markdown_table(["step", "seconds", "finished (UTC)"], rows)
