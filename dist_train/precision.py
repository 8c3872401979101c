"""Mixed precision decided in one place: an autocast context, and a grad scaler only for fp16."""
from __future__ import annotations

import contextlib

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """``fp32`` (no autocast), ``bf16`` autocast, or ``fp16`` autocast with one scaler per network."""

    def __init__(self, mode: str, device: torch.device):
        self.mode = mode
        self.device_type = device.type

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.mode)

    def autocast(self):
        """The context every forward pass runs in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh grad scaler for one network when training in fp16, otherwise None."""
        if self.mode != "fp16":
            return None
        return torch.amp.GradScaler(self.device_type)
