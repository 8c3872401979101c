"""Line and bar charts drawn with Pillow, so the demo needs no plotting library.

Deliberately plain: axes with a few ticks, a legend, one colour per series. Enough to read a loss
curve or compare throughput; not a general plotting API.
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75))
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 34, 46


def font(size: int = 13) -> ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` (the bitmap default where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    return [start + i * step for i in range(int(math.ceil((high - start) / step)) + 1)]


def _label(value: float, step: float | None = None) -> str:
    """A tick label with as many decimals as the tick spacing needs (34.36, not 34.4, for 0.02 steps)."""
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.1e}"
    if step:
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        return f"{value:.{decimals}f}"
    return f"{value:.3g}"


def line_chart(path: Path, series: dict[str, list[tuple[float, float]]], title: str, x_label: str,
               y_label: str, size: tuple[int, int] = (560, 320), log_y: bool = False) -> Path:
    """One line per named series of (x, y) points; written as PNG to ``path``."""
    width, height = size
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    points = [(x, y) for values in series.values() for x, y in values if math.isfinite(y) and (y > 0 or not log_y)]
    if not points:
        draw.text((MARGIN_LEFT, height // 2), "no data", fill="black", font=font())
        canvas.save(path)
        return path
    transform = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_values = [transform(p[1]) for p in points]
    y_ticks = _ticks(min(y_values), max(y_values))
    x_ticks = _ticks(x_low, x_high)
    y_low, y_high = y_ticks[0], y_ticks[-1]
    x_low, x_high = min(x_low, x_ticks[0]), max(x_high, x_ticks[-1])
    plot_w, plot_h = width - MARGIN_LEFT - MARGIN_RIGHT, height - MARGIN_TOP - MARGIN_BOTTOM

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        fx = (x - x_low) / ((x_high - x_low) or 1.0)
        fy = (transform(y) - y_low) / ((y_high - y_low) or 1.0)
        return MARGIN_LEFT + fx * plot_w, MARGIN_TOP + (1 - fy) * plot_h

    _axes(draw, title, x_label, y_label, size)
    y_step = None if log_y or len(y_ticks) < 2 else y_ticks[1] - y_ticks[0]
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else None
    for tick in y_ticks:
        y_px = MARGIN_TOP + (1 - (tick - y_low) / ((y_high - y_low) or 1.0)) * plot_h
        draw.line([(MARGIN_LEFT, y_px), (width - MARGIN_RIGHT, y_px)], fill=(230, 230, 230))
        draw.text((4, y_px - 7), _label(10 ** tick if log_y else tick, y_step), fill="black", font=font(11))
    for tick in x_ticks:
        x_px = MARGIN_LEFT + (tick - x_low) / ((x_high - x_low) or 1.0) * plot_w
        draw.text((x_px - 10, height - MARGIN_BOTTOM + 4), _label(tick, x_step), fill="black", font=font(11))
    for index, (name, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        pixels = [to_pixel(x, y) for x, y in values if math.isfinite(y) and (y > 0 or not log_y)]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels if len(pixels) < 30 else []:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        draw.line([(MARGIN_LEFT + 10, MARGIN_TOP + 10 + 16 * index), (MARGIN_LEFT + 30, MARGIN_TOP + 10 + 16 * index)],
                  fill=colour, width=3)
        draw.text((MARGIN_LEFT + 36, MARGIN_TOP + 3 + 16 * index), name, fill="black", font=font(12))
    canvas.save(path)
    return path


def bar_chart(path: Path, bars: dict[str, float], title: str, value_label: str,
              size: tuple[int, int] = (560, 300), highlight: str | None = None) -> Path:
    """Horizontal bars, one per name, with the value printed at its end; written as PNG."""
    width, height = size
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 8), title, fill="black", font=font(15))
    name_w = 150
    top, bottom = MARGIN_TOP + 6, height - 30
    finite = {k: v for k, v in bars.items() if v is not None and math.isfinite(v)}
    biggest = max(finite.values(), default=1.0) or 1.0
    row_h = (bottom - top) / max(len(bars), 1)
    for index, (name, value) in enumerate(bars.items()):
        y = top + index * row_h
        draw.text((10, y + row_h / 2 - 7), name, fill="black", font=font(12))
        if name not in finite:
            draw.text((name_w, y + row_h / 2 - 7), "n/a", fill="gray", font=font(12))
            continue
        length = (width - name_w - 90) * value / biggest
        colour = COLOURS[1] if name == highlight else COLOURS[0]
        draw.rectangle([name_w, y + row_h * 0.2, name_w + max(length, 1), y + row_h * 0.8], fill=colour)
        draw.text((name_w + length + 6, y + row_h / 2 - 7), _label(value), fill="black", font=font(12))
    draw.text((name_w, height - 22), value_label, fill="black", font=font(12))
    canvas.save(path)
    return path


def _axes(draw: ImageDraw.ImageDraw, title: str, x_label: str, y_label: str, size: tuple[int, int]) -> None:
    width, height = size
    draw.text((10, 8), title, fill="black", font=font(15))
    draw.line([(MARGIN_LEFT, MARGIN_TOP), (MARGIN_LEFT, height - MARGIN_BOTTOM),
               (width - MARGIN_RIGHT, height - MARGIN_BOTTOM)], fill="black")
    draw.text((width // 2 - 20, height - 20), x_label, fill="black", font=font(12))
    draw.text((MARGIN_LEFT + 4, MARGIN_TOP - 14), y_label, fill="black", font=font(11))
