"""Where a build of the C++ example (export/cpp) is cached, so that it is compiled once.

The folder is ``cpp-<key>`` under $CXR_SR_CPP_BUILD_DIR, else $XDG_CACHE_HOME or ~/.cache, then
``cxr-sr``; the key hashes the sources and the torch installation (version and folder), because
the binary links that installation's libtorch. (Not the Python's path: ``python`` and ``python3``
of one venv, or a console script, must find the same build.)
The test suite builds there; the demo runs only the build whose key matches its own torch.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

CPP_SOURCE = Path(__file__).resolve().parent / "cpp"
BINARY_NAME = "cxr_sr_upscale"


def build_key() -> str:
    import torch

    digest = hashlib.sha256(f"{torch.__version__}|{Path(torch.__file__).resolve().parent}".encode())
    for path in sorted(p for p in CPP_SOURCE.rglob("*") if p.is_file() and p.suffix != ".md"):
        digest.update(str(path.relative_to(CPP_SOURCE)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build_folder() -> Path:
    """The cached build folder for this checkout's sources, torch and Python."""
    root = os.environ.get("CXR_SR_CPP_BUILD_DIR")
    cache = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cxr-sr"
    return cache / f"cpp-{build_key()}"
