"""train.precision=auto: bf16 only where the device computes it natively.

Why: on a CPU without AMX or AVX-512-BF16 (an AMD EPYC before Zen 4, say) oneDNN emulates bf16 and
autocast makes training slower than fp32; on a recent Intel Xeon bf16 is the fast path. The
choice must follow the CPU's flags, and the run folder must say what was used.
"""
from __future__ import annotations

import torch
import yaml

from dist_train import precision
from dist_train.precision import cpu_has_native_bf16, resolve_precision


def test_cpu_flags_decide_native_bf16(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    zen4 = tmp_path / "zen4"
    zen4.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    zen3 = tmp_path / "zen3"
    zen3.write_text("flags\t\t: fpu sse avx2 fma\n")
    assert cpu_has_native_bf16(amx) and cpu_has_native_bf16(zen4)
    assert not cpu_has_native_bf16(zen3) and not cpu_has_native_bf16(tmp_path / "missing")


def test_auto_resolves_by_device_and_explicit_modes_stay(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp16", cpu) == "fp16"


def test_the_run_folder_records_the_resolved_precision(synth_images, tmp_path):
    from dist_train.config import load_config
    from dist_train.distributed import DistEnv
    from dist_train.trainer import Trainer

    cfg = load_config("tiny_cpu", [f"data.images={synth_images}", f"train.out_dir={tmp_path / 'run'}",
                                   "train.precision=auto", "data.workers=0"])
    trainer = Trainer(cfg, DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    trainer.close()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["precision"]
    assert saved == trainer.cfg.train.precision == resolve_precision("auto", torch.device("cpu"))
    assert saved in ("bf16", "fp32")
