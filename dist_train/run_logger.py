"""Where training reports go: tensorboard scalars and image grids, a metrics CSV, the console.

Only rank 0 writes; on other ranks every method is a no-op, so callers never test the rank.
A resumed run first calls ``forget_after(step)``: the steps after its checkpoint were logged by
the process that crashed and are about to be trained (and logged) again.
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from data_prep.atomic import write_bytes_atomic


class RunLogger:
    """Tensorboard events under ``RUN/tensorboard`` and one CSV row per validation in ``RUN/metrics.csv``."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.tensorboard_dir = self.run_dir / "tensorboard"
        self._writer = None
        self._purge_step: int | None = None

    @property
    def writer(self):
        """The tensorboard writer, opened at the first event (after ``forget_after``, if any)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir), purge_step=self._purge_step)
        return self._writer

    def forget_after(self, step: int) -> None:
        """Hide what earlier processes logged after ``step``: a resume from ``step`` logs it again.

        Tensorboard gets a purge marker at ``step + 1`` (its readers drop older events from there
        on; the events of ``step`` itself came before that checkpoint and stay), and metrics.csv
        is rewritten, atomically, without its rows after ``step``.
        """
        if not self.enabled:
            return
        self.close()
        self._purge_step = step + 1
        if not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as handle:
            reader = csv.DictReader(handle)
            kept = [row for row in reader if int(row["step"]) <= step]
            fields = reader.fieldnames
        if fields is None:  # torn before its header was complete: the next row starts it afresh
            self.csv_path.unlink()
            return
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
        write_bytes_atomic(self.csv_path, text.getvalue().encode("utf-8"))

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def images(self, step: int, lr: torch.Tensor, bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """One grid per validation: LR (nearest-upsampled), bicubic, SR and HR side by side."""
        if not self.enabled:
            return
        lr_big = F.interpolate(lr.float(), size=hr.shape[-2:], mode="nearest")
        row = torch.cat([lr_big, bicubic.float(), sr.float(), hr.float()], dim=-1)[:4].clamp(0, 1).cpu()
        self.writer.add_images("val/lr_bicubic_sr_hr", row, step)

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
