"""The report's figures: image crops with error maps, loss curves, throughput and consistency bars.

Pixels come from the project's own code (the exported model, dist_train.degradation, the
benchmarks' JSON); this module only arranges and draws them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.quality_figure import most_detailed_crop
from benchmarks.train_bench import read_scalars
from launch.demo.plots import bar_chart, font, line_chart

ERROR_GAIN = 8.0  # |error| x8: 1/8 of full scale reads as white
# SR and bicubic differ by far less than either differs from HR: their comparison needs more gain
COMPARE_GAIN = 32.0
LABEL_PX = 16


@dataclass
class Restoration:
    """One image through the pipeline: all [0, 1] float arrays; ``lr`` is 1/scale the size of the others."""

    name: str
    lr: np.ndarray
    bicubic: np.ndarray
    sr: np.ndarray
    hr: np.ndarray
    scale: int


def improvement_rgb(sr: np.ndarray, bicubic: np.ndarray, hr: np.ndarray, gain: float = ERROR_GAIN) -> np.ndarray:
    """Where SR is closer to HR than bicubic (blue) or further (red): ``|bicubic-HR| - |SR-HR|``, x gain."""
    gained = np.clip((np.abs(bicubic - hr) - np.abs(sr - hr)) * gain, -1, 1)
    rgb = np.full(hr.shape + (3,), 255.0)
    better, worse = np.clip(gained, 0, 1), np.clip(-gained, 0, 1)
    rgb[..., 0] -= 255 * better
    rgb[..., 1] -= 255 * (better + worse)
    rgb[..., 2] -= 255 * worse
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _gray_tile(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)).convert("RGB")


def comparison_figure(path: Path, rows: list[Restoration], crop_px: int) -> Path:
    """Per image: LR (nearest), bicubic, SR, HR crops, |bicubic-HR| and |SR-HR| x8, SR-vs-bicubic map."""
    labels = ["LR (nearest)", "bicubic", "SR (model)", "HR", f"|bicubic-HR| x{ERROR_GAIN:g}",
              f"|SR-HR| x{ERROR_GAIN:g}", f"SR vs bicubic x{COMPARE_GAIN:g}: blue better"]
    canvas = Image.new("RGB", (crop_px * len(labels), (crop_px + 2 * LABEL_PX) * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for row_index, item in enumerate(rows):
        size = min(crop_px, *item.hr.shape)
        top, left = most_detailed_crop(item.hr, size)
        window = (slice(top, top + size), slice(left, left + size))
        lr_window = (slice(top // item.scale, (top + size) // item.scale),
                     slice(left // item.scale, (left + size) // item.scale))
        lr_big = np.kron(item.lr[lr_window], np.ones((item.scale, item.scale), np.float32))
        tiles = [_gray_tile(lr_big), _gray_tile(item.bicubic[window]), _gray_tile(item.sr[window]),
                 _gray_tile(item.hr[window]),
                 _gray_tile(np.abs(item.bicubic[window] - item.hr[window]) * ERROR_GAIN),
                 _gray_tile(np.abs(item.sr[window] - item.hr[window]) * ERROR_GAIN),
                 Image.fromarray(improvement_rgb(item.sr[window], item.bicubic[window], item.hr[window],
                                                 COMPARE_GAIN))]
        y = row_index * (crop_px + 2 * LABEL_PX)
        draw.text((4, y + 1), f"{item.name}: HR crop at ({left}, {top}), {size} px", fill="black", font=font(12))
        for column, (tile, label) in enumerate(zip(tiles, labels)):
            canvas.paste(tile, (column * crop_px, y + 2 * LABEL_PX))
            draw.text((column * crop_px + 3, y + LABEL_PX + 1), label, fill="black", font=font(11))
    canvas.save(path)
    return path


def loss_figures(out_dir: Path, run_dir: Path, pretrain_steps: int) -> list[Path]:
    """Training losses (log scale) and validation PSNR against bicubic, from the run's tensorboard scalars.

    ``read_scalars`` keeps the resumed value of a step logged twice: the demo trains with --resume.
    """
    scalars = {tag: sorted(values.items()) for tag, values in read_scalars(run_dir).items()}
    losses = {tag.split("/", 1)[1]: values for tag, values in sorted(scalars.items())
              if tag.startswith("train/") and tag.split("/", 1)[1] in ("g_pixel", "g_adversarial", "d_loss")}
    validation = {label: scalars.get(f"val/{tag}", []) for tag, label in
                  (("psnr_db", "model (EMA)"), ("bicubic_psnr_db", "bicubic"))}
    phase = f"PSNR phase to step {pretrain_steps}, then GAN"
    return [line_chart(out_dir / "loss_curves.png", losses, f"Training losses (rank 0; {phase})", "step",
                       "loss", log_y=True),
            line_chart(out_dir / "val_psnr.png", validation, "Validation PSNR (crop, dB)", "step", "PSNR dB")]


def throughput_figure(path: Path, throughput: dict) -> Path:
    """Best-batch images/s of each method of a `bench throughput` JSON."""
    bars = {name: best.get("images_per_s") for name, best in throughput["best_batch"].items()}
    settings = throughput["settings"]
    return bar_chart(path, bars, f"Throughput {settings['lr_px']} -> {settings['out_px']} px on "
                     f"{settings['device']} ({settings['dtype']})", "images/s (best batch; higher is better)",
                     highlight="torchscript")


def consistency_figure(path: Path, qualities: dict[str, dict], residuals: list[Restoration]) -> Path:
    """Consistency dB (downsampled output vs LR input) per method and dataset, and the LR residual maps."""
    bars = {f"{dataset}: {method}": summary["summary"][method]["consistency_psnr_db"]["mean"]
            for dataset, summary in qualities.items() for method in ("model", "bicubic", "lanczos")}
    chart = Image.open(bar_chart(path, bars, "Consistency: PSNR(downsample(output), LR input)",
                                 "dB (higher = output agrees with its input)", size=(640, 40 + 26 * len(bars))))
    import torch

    from dist_train.degradation import downsample

    tile_px, gain = 200, ERROR_GAIN * 4
    tiles: list[tuple[str, str, Image.Image]] = []
    for item in residuals:
        for method, output in (("model", item.sr), ("bicubic", item.bicubic)):
            down = downsample(torch.from_numpy(np.clip(output, 0, 1))[None, None].float(), item.scale)[0, 0].numpy()
            residual = _gray_tile(np.abs(down - item.lr)[:tile_px, :tile_px] * gain)
            zoom = max(1, tile_px // max(residual.size))
            tiles.append((item.name[:28], f"{method}: |down(out)-LR| x{gain:g}",
                          residual.resize((residual.width * zoom, residual.height * zoom), Image.NEAREST)))
    strip_h = tile_px + 2 * LABEL_PX if tiles else 0
    canvas = Image.new("RGB", (max(chart.width, (tile_px + 8) * max(len(tiles), 1)), chart.height + strip_h), "white")
    canvas.paste(chart, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, (name, label, tile) in enumerate(tiles):
        x = index * (tile_px + 8)
        canvas.paste(tile, (x, chart.height + 2 * LABEL_PX))
        draw.text((x + 2, chart.height + 1), name, fill="black", font=font(11))
        draw.text((x + 2, chart.height + LABEL_PX), label, fill="black", font=font(10))
    canvas.save(path)
    return path
