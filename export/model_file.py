"""Loading an exported model file (TorchScript or .pt2) for inference, with one-line errors."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch


class ModelFileError(RuntimeError):
    """The model file is missing, not an exported cxr-sr model, or of the wrong scale."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {' '.join(str(problem).split())}")


@dataclass
class ExportedModel:
    """A loaded model: ``forward`` maps N x 1 x h x w in [0, 1] to N x 1 x sh x sw in [0, 1]."""

    path: Path
    forward: Callable[[torch.Tensor], torch.Tensor]
    scale: int
    meta: dict[str, Any]
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.forward(batch.to(self.device, torch.float32)).float()


def load_exported(path: Path, device: str = "cpu", expected_scale: int | None = None) -> ExportedModel:
    """Loads and probes the model on an 8 x 8 input; raises ModelFileError naming `path`."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    if path.stat().st_size == 0:
        raise ModelFileError(path, "zero-byte file, not a model")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(path, "not a TorchScript or .pt2 file (not a zip archive)")
    torch_device = torch.device(device)
    try:
        if path.suffix == ".pt2":
            from export.pt2 import load_pt2

            forward, meta = load_pt2(path, torch_device)
        else:
            from export.torchscript import load_torchscript

            forward, meta = load_torchscript(path, torch_device)
    except Exception as exc:  # torch raises RuntimeError/ValueError/... with multi-line text
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(path, f"cannot load as an exported model ({first_line})") from exc
    scale = meta.get("scale")
    if not isinstance(scale, int):
        raise ModelFileError(path, "no meta.json with a scale: not exported by `cxr-sr export`")
    model = ExportedModel(path, forward, scale, meta, torch_device)
    try:
        probe = model(torch.zeros(1, 1, 8, 8))
    except Exception as exc:
        raise ModelFileError(path, f"fails on a 1x1x8x8 input ({str(exc).strip().splitlines()[0]})") from exc
    if tuple(probe.shape) != (1, 1, 8 * scale, 8 * scale):
        raise ModelFileError(path, f"maps 8x8 to {tuple(probe.shape)}, not the x{scale} of its meta.json")
    if expected_scale is not None and scale != expected_scale:
        raise ModelFileError(path, f"model upscales x{scale}, expected x{expected_scale} (--scale)")
    return model


def describe(model: ExportedModel) -> str:
    """One line for logs and DICOM derivation notes."""
    step = model.meta.get("training_step")
    version = model.meta.get("package_version", "unknown")
    return f"cxr-sr {version} x{model.scale} model {model.path.name}" + (f" (step {step})" if step is not None else "")

