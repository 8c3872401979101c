"""Where training reports go: tensorboard scalars and image grids, a metrics CSV, the console.

Only rank 0 writes; on other ranks every method is a no-op, so callers never test the rank.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


class RunLogger:
    """Tensorboard events under ``RUN/tensorboard`` and one CSV row per validation in ``RUN/metrics.csv``."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.tensorboard_dir = self.run_dir / "tensorboard"
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir))

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self._writer.add_scalar(f"{prefix}/{name}", value, step)

    def images(self, step: int, lr: torch.Tensor, bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """One grid per validation: LR (nearest-upsampled), bicubic, SR and HR side by side."""
        if not self.enabled:
            return
        lr_big = F.interpolate(lr.float(), size=hr.shape[-2:], mode="nearest")
        row = torch.cat([lr_big, bicubic.float(), sr.float(), hr.float()], dim=-1)[:4].clamp(0, 1).cpu()
        self._writer.add_images("val/lr_bicubic_sr_hr", row, step)

    def metrics_row(self, row: dict) -> None:
        """Append a row to the metrics CSV (the header is written with the first row)."""
        if not self.enabled:
            return
        new_file = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)

    def console(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
