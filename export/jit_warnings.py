"""Silence torch.jit's warning about its own deprecation, and nothing else.

Current PyTorch prints "`torch.jit.script` is deprecated ..." (and the same for save/load/trace)
on every call: a FutureWarning in torch 2.14, a DeprecationWarning in 2.11 (the GPU machines').
TorchScript is what the user deploys, so the warning is noise for our users; but every other
warning, including other deprecation warnings, must still reach them.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

# Matches the messages of torch/jit/_script.py, _serialization.py, _trace.py, _freeze.py:
# "`torch.jit.X` is deprecated. ..." and "`torch.jit.X` is not supported in Python 3.14+ ..."
JIT_DEPRECATION_MESSAGE = r"`torch\.jit\.\w+` is (deprecated|not supported in Python)"


@contextlib.contextmanager
def quiet_jit_deprecation() -> Iterator[None]:
    """Within the block, ignore only torch.jit's warnings about its own deprecation."""
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", message=JIT_DEPRECATION_MESSAGE, category=category)
        yield
