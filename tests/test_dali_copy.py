"""How a DALI batch becomes a torch tensor (``shards_dali._to_torch``), on a real CPU pipeline.

Why: ``feed_ndarray`` copies CPU output with a host memcpy into whatever pointer it is given, so
CPU decoding (``data.device=cpu``, the default) with CUDA training must land in a host tensor
(pinned, then moved with ``non_blocking=True``), never in a device tensor: that wrote host data
into a device pointer and crashed. No GPU is needed to check which branch a batch takes: CUDA's
availability and ``Tensor.to`` are replaced by recorders, while the batch is real DALI CPU output
and the copy is DALI's own. The GPU-to-GPU branch runs in ``benchmarks/gpu_checks.sh`` only.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types

from dist_train.data import shards_dali

VALUES = np.arange(2 * 1 * 3 * 5, dtype=np.float32).reshape(2, 1, 3, 5) / 100


@pipeline_def(batch_size=2, num_threads=1, device_id=None)
def _constant_pipeline():
    return fn.external_source(source=lambda: [VALUES[0], VALUES[1]], batch=True, dtype=types.FLOAT)


def _cpu_batch():
    """A TensorListCPU of VALUES, straight from a built DALI pipeline."""
    pipe = _constant_pipeline()
    pipe.build()
    (batch,) = pipe.run()
    assert type(batch).__name__ == "TensorListCPU"
    return batch


def test_cpu_batch_to_cpu_is_a_plain_host_copy(monkeypatch):
    moves = []
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: moves.append((a, k)) or self)
    out = _to_torch_checked(torch.device("cpu"))
    assert out.device.type == "cpu" and not out.is_pinned()
    assert moves == []  # no transfer when the target is the host


def test_cpu_batch_to_cuda_goes_through_pinned_host_memory_and_a_non_blocking_move(monkeypatch):
    """The CUDA target is faked: CUDA reports available, so the host buffer must be asked for
    pinned (the request is recorded, then served unpinned since no driver is here), and the
    move to the device is recorded instead of run."""
    real_empty = torch.empty
    allocations, moves = [], []

    def recording_empty(*args, **kwargs):
        allocations.append(dict(kwargs))
        kwargs.pop("pin_memory", None)
        return real_empty(*args, **kwargs)

    def recording_to(self, *args, **kwargs):
        moves.append((args, kwargs, self.clone()))
        return self

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "empty", recording_empty)
    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    cuda = torch.device("cuda", 0)
    _to_torch_checked(cuda)
    assert len(allocations) == 1 and allocations[0].get("pin_memory") is True
    assert allocations[0].get("device") in (None, "cpu", torch.device("cpu"))  # never the GPU
    (args, kwargs, moved), = moves
    assert args == (cuda,) and kwargs == {"non_blocking": True}
    assert np.array_equal(moved.numpy(), VALUES)  # the host copy was complete before the move


def test_cpu_batch_to_cuda_is_not_pinned_without_cuda(monkeypatch):
    """Pinning needs a CUDA driver; without one the host buffer is ordinary memory (and the move
    to the device is what fails, with torch's own message, not a memcpy into a bad pointer)."""
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = _to_torch_checked(torch.device("cuda", 0))
    assert not out.is_pinned()


def test_gpu_batch_needs_a_cuda_target():
    """Anything that is not DALI CPU output takes the device branch, which refuses a CPU target
    instead of letting feed_ndarray write device memory into a host pointer."""
    class NotCpuTensor:
        def shape(self):
            return [2, 1, 3, 5]

    class GpuLikeBatch:
        def as_tensor(self):
            return NotCpuTensor()

    with pytest.raises(ValueError, match="train.device=cuda"):
        shards_dali._to_torch(GpuLikeBatch(), torch.device("cpu"))


def _to_torch_checked(device: torch.device) -> torch.Tensor:
    """``_to_torch`` of a real CPU batch; its values and type must be VALUES in float32."""
    out = shards_dali._to_torch(_cpu_batch(), device)
    assert out.dtype == torch.float32 and np.array_equal(out.numpy(), VALUES)
    return out
