"""Silence torch.jit's own deprecation FutureWarning, and nothing else.

Current PyTorch prints "`torch.jit.script` is deprecated ..." (and the same for save/load/trace)
on every call. TorchScript is what the user deploys, so the warning is noise for our users; but
every other warning, including other FutureWarnings, must still reach them.
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
    """Within the block, ignore only torch.jit's FutureWarning about its own deprecation."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION_MESSAGE, category=FutureWarning)
        yield
