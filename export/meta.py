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


def generator_cost(generator: torch.nn.Module) -> dict[str, Any]:
    """Parameters and GMAC per 256 x 256 input of a generator, for ``build_meta(cost=...)``."""
    from dist_train.models.cost import BUDGET_INPUT_PX, gmac_per_input, parameter_count

    return {"parameters": parameter_count(generator), "input_px": BUDGET_INPUT_PX,
            "gmac": round(gmac_per_input(generator, BUDGET_INPUT_PX), 3)}


def build_meta(scale: int, model_config: dict[str, Any] | None = None, step: int | None = None,
               metrics: dict[str, Any] | None = None, weights: str = "ema",
               export_format: str = "torchscript", cost: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata dict: scale, channels, value range, model config, cost, step, metrics, versions."""
    return {
        "scale": int(scale),
        "channels": 1,
        "value_range": [0.0, 1.0],
        "input": "float32 N x 1 x h x w in [0, 1], h, w >= 8",
        "output": "float32 N x 1 x (scale*h) x (scale*w) in [0, 1], clamped",
        "model_config": model_config or {},
        "cost": cost or {},
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
