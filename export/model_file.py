"""Loading an exported model file (TorchScript or .pt2) for inference, with one-line errors.

Also the checks every caller needs around it: the ``--device`` string, and the model's output
(finite, within [0, 1]) before anything is written from it.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch


class ModelFileError(RuntimeError):
    """The model file is missing, not an exported cxr-sr model, or of the wrong scale."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {' '.join(str(problem).split())}")


class ModelRunError(RuntimeError):
    """The model raised while running on one input; the message is one line naming the model."""


class ModelOutputError(ValueError):
    """The model returned values no image can be made of (non-finite, or outside [0, 1])."""


EXPORT_HINT = "make a model file with `cxr-sr export --run RUN_DIR --out model.pt`"
# the exported graph clamps to [0, 1]; anything further out means a foreign or broken model
RANGE_TOLERANCE = 1e-3


def resolve_device(name: str) -> torch.device:
    """``--device`` as a torch device that exists here: cpu, cuda, cuda:N, mps; ValueError otherwise."""
    text = str(name).strip().lower()
    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ValueError(f"--device {name}: expected cpu, cuda, cuda:N or mps")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: no CUDA device is available here (use --device cpu)")
        if index is not None and int(index) >= count:
            raise ValueError(f"--device {name}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"--device {name}: no Apple MPS device is available here (use --device cpu)")
    return torch.device(text)


def _error_line(exc: BaseException) -> str:
    """The line of a (possibly multi-line) torch error that says what went wrong.

    TorchScript errors put the interpreter's traceback first and the actual error last.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if any("Traceback" in line for line in lines) else lines[0]


@dataclass
class ExportedModel:
    """A loaded model: ``forward`` maps N x 1 x h x w in [0, 1] to N x 1 x sh x sw in [0, 1]."""

    path: Path
    forward: Callable[[torch.Tensor], torch.Tensor]
    scale: int
    meta: dict[str, Any]
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        try:
            with torch.inference_mode():
                return self.forward(batch.to(self.device, torch.float32)).float()
        except MemoryError:
            raise
        except Exception as exc:  # torch.jit.Error is not even a RuntimeError
            raise ModelRunError(f"model {self.path.name} failed: {_error_line(exc)}") from exc

    def check_output(self, sr: torch.Tensor) -> None:
        """Raises ModelOutputError unless `sr` is finite and within [0, 1] (docs/contracts.md §4)."""
        if not bool(torch.isfinite(sr).all()):
            raise ModelOutputError(f"model {self.path.name} returned non-finite values (NaN or Inf); "
                                   "nothing written")
        low, high = float(sr.min()), float(sr.max())
        if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
            raise ModelOutputError(f"model {self.path.name} returned values in [{low:.4g}, {high:.4g}], "
                                   "outside [0, 1]; nothing written")


def _not_a_model_file(path: Path) -> str | None:
    """Why `path` is something other than an exported model, when that can be told cheaply."""
    if path.is_dir():
        if (path / "trainer.pt").is_file() or (path / "checkpoints").is_dir():
            return f"a training run or checkpoint folder, not a model file; {EXPORT_HINT}"
        return "a folder, not a model file"
    if not path.is_file():
        return "no such file"
    if path.stat().st_size == 0:
        return "zero-byte file, not a model"
    if not zipfile.is_zipfile(path):
        return "not a TorchScript or .pt2 file (not a zip archive)"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(n.endswith("/data.pkl") for n in names) and not any(n.endswith("/constants.pkl") for n in names):
        return f"a torch.save file (a training checkpoint or a state_dict), not an exported model; {EXPORT_HINT}"
    return None


def load_exported(path: Path, device: str = "cpu", expected_scale: int | None = None) -> ExportedModel:
    """Loads and probes the model on an 8 x 8 input; raises ModelFileError naming `path`."""
    path = Path(path)
    torch_device = resolve_device(device)
    problem = _not_a_model_file(path)
    if problem is not None:
        raise ModelFileError(path, problem)
    try:
        if path.suffix == ".pt2":
            from export.pt2 import load_pt2

            forward, meta = load_pt2(path, torch_device)
        else:
            from export.torchscript import fastest_cpu_form, load_torchscript

            forward, meta = load_torchscript(path, torch_device)
            if torch_device.type == "cpu":
                forward, meta["runtime"] = fastest_cpu_form(forward)
    except Exception as exc:  # torch raises RuntimeError/ValueError/... with multi-line text
        raise ModelFileError(path, f"cannot load as an exported model ({_error_line(exc)})") from exc
    scale = meta.get("scale")
    if not isinstance(scale, int):
        raise ModelFileError(path, "no meta.json with a scale: not exported by `cxr-sr export`")
    model = ExportedModel(path, forward, scale, meta, torch_device)
    try:
        probe = model(torch.zeros(1, 1, 8, 8))
    except Exception as exc:
        raise ModelFileError(path, f"fails on a 1x1x8x8 input ({_error_line(exc)})") from exc
    if tuple(probe.shape) != (1, 1, 8 * scale, 8 * scale):
        raise ModelFileError(path, f"maps 8x8 to {tuple(probe.shape)}, not the x{scale} of its meta.json")
    try:
        model.check_output(probe.cpu())
    except ModelOutputError as exc:
        raise ModelFileError(path, f"on a 1x1x8x8 input of zeros: {exc}") from None
    if expected_scale is not None and scale != expected_scale:
        raise ModelFileError(path, f"model upscales x{scale}, expected x{expected_scale} (--scale)")
    return model


def describe(model: ExportedModel) -> str:
    """One line for logs and DICOM derivation notes."""
    step = model.meta.get("training_step")
    version = model.meta.get("package_version", "unknown")
    return f"cxr-sr {version} x{model.scale} model {model.path.name}" + (f" (step {step})" if step is not None else "")

