"""The quality figure: per image, HR / bicubic / lanczos / model crops, then error maps."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CROP_PX = 192  # HR px shown per panel
ERROR_GAIN = 8.0  # |SR - HR| is small: amplified so that 1/8 of full scale reads as white


def most_detailed_crop(hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the size x size window with the most gradient energy (where methods differ)."""
    gy, gx = np.gradient(hr)
    energy = gy ** 2 + gx ** 2
    best, best_at = -1.0, (0, 0)
    step = max(size // 2, 1)
    for top in range(0, max(hr.shape[0] - size, 0) + 1, step):
        for left in range(0, max(hr.shape[1] - size, 0) + 1, step):
            value = float(energy[top:top + size, left:left + size].sum())
            if value > best:
                best, best_at = value, (top, left)
    return best_at


def write_figure(path: Path, kept: list[tuple]) -> None:
    """One row per image: HR, bicubic, lanczos, each model's crop, then |error| x8 for each method."""
    from PIL import Image, ImageDraw

    first_outputs = kept[0][2]
    methods = [m for m in ("bicubic", "lanczos") if m in first_outputs]
    methods += [m for m in first_outputs if m not in methods]
    labels = ["HR", *methods, *(f"|{m} - HR| x{ERROR_GAIN:g}" for m in methods)]
    size, label_px = CROP_PX, 14
    canvas = Image.new("L", (size * len(labels), (size + label_px) * len(kept)), 0)
    draw = ImageDraw.Draw(canvas)
    for row, (name, hr, outputs) in enumerate(kept):
        hr_np = hr[0, 0].numpy()
        top, left = most_detailed_crop(hr_np, size)
        window = (slice(top, top + size), slice(left, left + size))
        panels = [hr_np[window]] + [outputs[m][0, 0].numpy()[window] for m in methods]
        panels += [np.clip(np.abs(outputs[m][0, 0].numpy()[window] - hr_np[window]) * ERROR_GAIN, 0, 1)
                   for m in methods]
        y = row * (size + label_px)
        for column, (panel, label) in enumerate(zip(panels, labels)):
            tile = Image.fromarray(np.rint(np.clip(panel, 0, 1) * 255).astype(np.uint8))
            canvas.paste(tile, (column * size, y + label_px))
            draw.text((column * size + 2, y + 1), label if column else f"{name[:20]} HR", fill=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
