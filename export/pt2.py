"""The forward-looking export: torch.export + AOTInductor `.pt2` package with dynamic shapes.

TorchScript is deprecated in current PyTorch; a `.pt2` package is its successor, loadable from
Python (`torch._inductor.aoti_load_package`) and C++ (`torch::inductor::AOTIModelPackageLoader`).
Batch, height and width are dynamic. The package is compiled for one device (the one given), and
carries the same `meta.json` text as the TorchScript file, in the AOTInductor metadata.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from data_prep.atomic import tmp_path_for
from export.meta import META_FILE, dumps
from export.parity import ParityReport, check_parity, random_inputs
from export.wrapper import ClampedGenerator

MAX_BATCH = 1024
MAX_SIDE_PX = 8192
# an example batch of 2, not 1: torch.export specialises dimensions of size 0 and 1 to constants
EXAMPLE_SHAPE = (2, 1, 32, 32)
PT2_TOLERANCE = 1e-5


def export_pt2(generator: nn.Module, meta: dict[str, Any], out: Path,
               parity_inputs: list[tuple[str, torch.Tensor]] | None = None,
               device: str = "cpu") -> ParityReport:
    """Exports, compiles and packages the clamped generator; parity-checked against eager.

    Compiling needs a C++ compiler (and, for CUDA, the CUDA toolkit) on the exporting machine.
    `out` is written under a temporary name and renamed only after parity passes on the package
    as written, so it is either complete or absent, and no temporary file outlives a failure.
    """
    scale = int(meta["scale"])
    torch_device = torch.device(device)
    wrapped = ClampedGenerator(generator.eval(), scale).eval().to(torch_device)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    height = torch.export.Dim("height", min=8, max=MAX_SIDE_PX)
    width = torch.export.Dim("width", min=8, max=MAX_SIDE_PX)
    example = torch.rand(*EXAMPLE_SHAPE, device=torch_device)
    with torch.no_grad():
        program = torch.export.export(wrapped, (example,), dynamic_shapes={"x": {0: batch, 2: height, 3: width}})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # AOTInductor wants a package path ending in .pt2
    tmp = tmp_path_for(out, keep_suffix=True)
    meta = {**meta, "format": "pt2", "device": str(torch_device)}
    try:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp), inductor_configs={"aot_inductor.metadata": {META_FILE: dumps(meta)}})
        loaded, _ = load_pt2(tmp, torch_device)
        inputs = [(name, x.to(torch_device)) for name, x in random_inputs() + list(parity_inputs or [])]
        report = check_parity(wrapped, loaded, inputs, tolerance=PT2_TOLERANCE)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def load_pt2(path: Path, device: str | torch.device = "cpu") -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
    """(callable on N x 1 x h x w, meta dict) of a package written by `export_pt2`."""
    device = torch.device(device)
    package = torch._inductor.aoti_load_package(str(path), device_index=device.index if device.index is not None else -1)
    metadata = package.get_metadata()
    meta = json.loads(metadata[META_FILE]) if META_FILE in metadata else {}
    if meta.get("device") and torch.device(meta["device"]).type != device.type:
        raise ValueError(f"package compiled for {meta['device']}, asked to run on {device}")
    return package, meta
