"""The per-image report of `cxr-sr upscale`, as JSON or CSV (chosen by the file's extension)."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_prep.atomic import write_bytes_atomic


@dataclass
class ImageResult:
    """One input file's outcome; figures are None where not computed."""

    input: str
    status: str = "ok"  # "ok", "error", or "skipped" (a folder's file that is not an image)
    error: str | None = None  # for "skipped": the reason
    output: str | None = None
    input_size: str | None = None  # "WxH"
    output_size: str | None = None
    bit_depth: int | None = None
    tiles: int | None = None
    consistency_psnr_db: float | None = None  # docs/contracts.md §5: PSNR(down(SR), LR)
    consistency_after_dc_psnr_db: float | None = None  # after the hard data-consistency step
    seconds: float | None = None
    notes: list[str] = field(default_factory=list)


FIELDS = list(ImageResult.__dataclass_fields__)


def _json_safe(value: Any) -> Any:
    """PSNR is infinite for identical images; strict JSON has no Infinity, so it becomes "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def summary(results: list[ImageResult]) -> dict[str, Any]:
    """Counts (skipped files are not images), and the mean consistency figure over images where it
    is finite."""
    ok = [r for r in results if r.status == "ok"]
    skipped = sum(r.status == "skipped" for r in results)
    figures = [r.consistency_psnr_db for r in ok
               if r.consistency_psnr_db is not None and math.isfinite(r.consistency_psnr_db)]
    return {"images": len(results) - skipped, "ok": len(ok), "failed": len(results) - skipped - len(ok),
            "skipped": skipped, "mean_consistency_psnr_db": sum(figures) / len(figures) if figures else None}


def write_report(path: Path, results: list[ImageResult], meta: dict[str, Any]) -> None:
    """JSON (results, summary and the model's meta) for .json; one row per image for .csv.

    Written atomically, so a report on disk is always a complete one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=FIELDS)
        writer.writeheader()
        for result in results:
            row = asdict(result)
            row["notes"] = "; ".join(result.notes)
            writer.writerow(row)
        write_bytes_atomic(path, text.getvalue().encode("utf-8"))
        return
    document = {"summary": summary(results), "model": meta, "images": [asdict(r) for r in results]}
    text = json.dumps(_json_safe(document), indent=2, default=str, allow_nan=False)
    write_bytes_atomic(path, text.encode("utf-8"))
