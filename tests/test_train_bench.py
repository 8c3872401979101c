"""`cxr-sr bench train`'s arithmetic: warm-up steps dropped, throughput as patches over time (the
harmonic mean of per-step rates, not their mean), scaling against the same backend's one process."""
from __future__ import annotations

import pytest

from benchmarks.train_bench import add_scaling, summarise


def test_throughput_is_patches_over_time_after_the_warmup():
    scalars = {"train/patches_per_s": {1: 1.0, 2: 10.0, 3: 30.0},
               "train/data_wait_fraction": {1: 0.9, 2: 0.1, 3: 0.3}}
    summary = summarise(scalars, warmup=1, nproc=2)
    # 2 steps of equal patches taking 1/10 + 1/30 of a unit: 2 / (4/30) = 15 patches/s
    assert summary["patches_per_s"] == pytest.approx(15.0)
    assert summary["patches_per_s_per_process"] == pytest.approx(7.5)
    assert summary["data_wait_fraction"] == pytest.approx(0.2) and summary["timed_steps"] == 2


def test_scaling_efficiency_compares_with_the_same_backends_single_process():
    cases = [{"backend": "ddp", "nproc": 1, "patches_per_s": 10.0},
             {"backend": "ddp", "nproc": 2, "patches_per_s": 15.0},
             {"backend": "deepspeed", "nproc": 2, "patches_per_s": 15.0}]
    add_scaling(cases)
    assert cases[0]["scaling_efficiency"] == 1.0 and cases[1]["scaling_efficiency"] == pytest.approx(0.75)
    assert "scaling_efficiency" not in cases[2]  # no single-process deepspeed case to compare with
