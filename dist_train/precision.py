"""Mixed precision decided in one place: an autocast context, and a grad scaler only for fp16."""
from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

# CPU flags of native bf16 arithmetic (Intel AMX, AVX-512-BF16 on Intel and AMD Zen 4): without
# them oneDNN emulates bf16 and autocast makes training slower than fp32.
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU computes bf16 in hardware (read from its flags; False when unknown)."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_CPU_FLAGS)


def resolve_precision(mode: str, device: torch.device) -> str:
    """``auto`` -> bf16 where the device computes it natively (CUDA with bf16, a CPU with AMX or
    AVX-512-BF16), else fp32; any other mode is returned as it is."""
    if mode != "auto":
        return mode
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


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
