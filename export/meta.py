"""The `meta.json` carried by every exported model (docs/contracts.md §4)."""
from __future__ import annotations

import datetime
import importlib.metadata
import json
from typing import Any

import torch

META_FILE = "meta.json"


def package_version() -> str:
    """Installed cxr-sr version, or "unknown" when run from a bare checkout."""
    try:
        return importlib.metadata.version("cxr-sr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_meta(scale: int, model_config: dict[str, Any] | None = None, step: int | None = None,
               metrics: dict[str, Any] | None = None, weights: str = "ema",
               export_format: str = "torchscript") -> dict[str, Any]:
    """The metadata dict: scale, channels, value range, model config, step, metrics, versions."""
    return {
        "scale": int(scale),
        "channels": 1,
        "value_range": [0.0, 1.0],
        "input": "float32 N x 1 x h x w in [0, 1], h, w >= 8",
        "output": "float32 N x 1 x (scale*h) x (scale*w) in [0, 1], clamped",
        "model_config": model_config or {},
        "training_step": step,
        "metrics": metrics or {},
        "weights": weights,
        "format": export_format,
        "package_version": package_version(),
        "torch_version": torch.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def dumps(meta: dict[str, Any]) -> str:
    """Stable JSON text of `meta` (non-JSON values such as tensors become strings)."""
    return json.dumps(meta, indent=2, sort_keys=True, default=str)
