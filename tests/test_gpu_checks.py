"""benchmarks/gpu_checks.sh is run on a lent GPU machine once, with no chance to debug it there:
its wiring (synthetic data, random VGG weights file, both benchmarks, the DALI CPU-decoding
check, the outputs) is run here on the CPU with tiny settings, so that a GPU session only has
to call it. No figure is checked."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT


@pytest.mark.slow
def test_gpu_checks_script_runs_both_benchmarks_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "PYTHON": sys.executable}
    result = subprocess.run(["bash", "benchmarks/gpu_checks.sh", str(out)], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training backends: ddp" in (out / "env.txt").read_text()
    throughput = json.loads((out / "throughput.json").read_text())
    assert throughput["header"]["machine"]["cpu_cores"] and throughput["best_batch"]["torchscript"]["images_per_s"] > 0
    train = json.loads((out / "train.json").read_text())
    assert [case["backend"] for case in train["cases"]][0] == "ddp"
    assert all("error" not in case and case["patches_per_s"] > 0 for case in train["cases"])
    assert "loss.perceptual_weight=1.0" in train["overrides"] and "train.precision=bf16" in train["overrides"]
    # DALI is installed here, so its check must have run (not reported itself skipped) and passed
    assert (out / "dali_cpu_decode.txt").read_text().startswith(
        "dali data.device=cpu -> train.device=cpu: 3 train and 1 val batches equal")
