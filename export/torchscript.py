"""TorchScript export of the generator (docs/contracts.md §4) and its loader."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data_prep.atomic import atomic_open
from export.jit_warnings import quiet_jit_deprecation
from export.meta import META_FILE, dumps
from export.parity import ParityReport, check_parity, random_inputs
from export.wrapper import ClampedGenerator


def script_generator(generator: nn.Module, scale: int) -> torch.jit.ScriptModule:
    """The clamped generator, scripted (not traced: h and w stay free) in eval mode on CPU."""
    wrapped = ClampedGenerator(generator.eval().cpu().float(), scale).eval()
    with quiet_jit_deprecation():
        return torch.jit.script(wrapped)


def export_torchscript(generator: nn.Module, meta: dict[str, Any], out: Path,
                       parity_inputs: list[tuple[str, torch.Tensor]] | None = None) -> ParityReport:
    """Writes the TorchScript file with `meta.json` to `out` after a parity check against eager.

    The file is written to a temporary name and renamed only once the saved file passes parity
    too, so `out` is either complete or absent and no temporary file outlives a failure.
    Returns the parity report; raises ParityError (and writes nothing) when parity fails.
    """
    scale = int(meta["scale"])
    scripted = script_generator(generator, scale)
    eager = ClampedGenerator(generator, scale).eval()
    inputs = random_inputs() + list(parity_inputs or [])
    report = check_parity(eager, scripted, inputs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as handle:
        with quiet_jit_deprecation():
            torch.jit.save(scripted, handle, _extra_files={META_FILE: dumps(meta)})
        handle.flush()
        # parity again on the file as saved, so a serialisation problem cannot slip through
        loaded, _ = load_torchscript(Path(handle.name))
        check_parity(eager, loaded, inputs[:1])
    return report


def load_torchscript(path: Path, device: str | torch.device = "cpu") -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """(module in eval mode, meta dict) of a TorchScript file written by `export_torchscript`."""
    extra_files = {META_FILE: ""}
    with quiet_jit_deprecation():
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra_files)
    meta = json.loads(extra_files[META_FILE]) if extra_files[META_FILE] else {}
    return module.eval(), meta


def freeze_for_inference(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """A frozen copy (weights as constants) optimised for inference: conv fusion, and on the CPU
    oneDNN-prepacked convolutions; the fastest TorchScript form on a CPU (benchmarks/RESULTS.md)."""
    import copy

    with quiet_jit_deprecation():
        return torch.jit.optimize_for_inference(torch.jit.freeze(copy.deepcopy(module).eval()))


def fastest_cpu_form(module: torch.jit.ScriptModule) -> tuple[torch.jit.ScriptModule, str]:
    """(the frozen, optimised module if it passes parity with ``module``, else ``module``; which)."""
    try:
        frozen = freeze_for_inference(module)
        with torch.inference_mode():
            report = check_parity(module, frozen, random_inputs()[:2])
    except Exception:  # a graph freezing cannot handle: the plain module is still correct
        return module, "torchscript"
    return (frozen, "torchscript frozen") if report.passed else (module, "torchscript")
