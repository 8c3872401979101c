"""Running the exported model once through the C++ example (export/cpp), when it has been built.

The demo never builds it (a minute of compiling on a 2-core box): it looks for a binary where the
README's build and the test suite's cached build (export/cpp_cache.py) put it, and skips with the
build command otherwise.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from export.cpp_cache import BINARY_NAME, build_folder

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILD_HINT = "cmake -S export/cpp -B build && cmake --build build -j 2"


def find_binary() -> Path | None:
    """$CXR_SR_CPP_BINARY, else build/ of the checkout, else the tests' cached build for this torch.

    Only the cached build made with this torch and Python is taken: another venv's build links
    another libtorch, which may not load this torch's TorchScript files.
    """
    explicit = os.environ.get("CXR_SR_CPP_BINARY")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    candidates = [PROJECT_ROOT / "build" / BINARY_NAME, build_folder() / BINARY_NAME]
    return next((p for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


def run_cpp_example(binary: Path, model: Path, lr_png: Path, python_sr: np.ndarray, out_png: Path) -> dict:
    """Upscales ``lr_png`` with the binary; returns its output size and max difference to Python (levels)."""
    result = subprocess.run([str(binary), str(model), str(lr_png), str(out_png)], capture_output=True,
                            text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"{binary} exited with {result.returncode}: {result.stderr.strip()[:300]}")
    cpp = np.asarray(Image.open(out_png), dtype=np.int32)
    python = np.rint(np.clip(python_sr, 0, 1) * 255).astype(np.int32)
    if cpp.shape != python.shape:
        raise RuntimeError(f"C++ output is {cpp.shape}, Python's {python.shape}")
    return {"binary": str(binary), "output": str(out_png), "size": f"{cpp.shape[1]}x{cpp.shape[0]}",
            "max_abs_diff_levels": int(np.abs(cpp - python).max()), "stdout": result.stdout.strip()[-500:]}
