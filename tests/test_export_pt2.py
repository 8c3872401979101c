"""The `.pt2` (torch.export + AOTInductor) export: dynamic shapes, meta, Python and C++ loading.

AOTInductor compiles C++ at export time (~1-2 min on the 2-core CI box), hence `slow`.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from export.pt2 import load_pt2
from export.torchscript import load_torchscript
from launch.cli import main as cxr_sr
from tests.export_helpers import exported_fake_run, smooth_image
from tests.test_cpp_example import cpp_binary  # noqa: F401  (the session-cached C++ build)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory) -> tuple[Path, Path]:
    """`cxr-sr export --format both`: TorchScript at --out and a .pt2 beside it."""
    script_path = exported_fake_run(tmp_path_factory.mktemp("pt2"), "--format", "both")
    return script_path, script_path.with_suffix(".pt2")


def test_dynamic_batch_and_size_match_torchscript(both_formats):
    """One package serves any batch and any h, w >= 8, and agrees with the TorchScript file."""
    script_path, package_path = both_formats
    package, meta = load_pt2(package_path)
    scripted, _ = load_torchscript(script_path)
    assert meta["scale"] == 4 and meta["format"] == "pt2" and meta["training_step"] == 80
    for shape in ((1, 1, 8, 8), (3, 1, 21, 34), (5, 1, 64, 40)):
        x = torch.rand(*shape)
        out = package(x)
        assert out.shape == (shape[0], 1, 4 * shape[2], 4 * shape[3])
        assert (out - scripted(x)).abs().max() <= 1e-5


def test_cpp_runs_the_package(cpp_binary, both_formats, tmp_path):  # noqa: F811
    """The C++ example loads the .pt2 with the AOTI loader and matches Python."""
    _, package_path = both_formats
    package, _ = load_pt2(package_path)
    lr = smooth_image(24, 16)
    lr.tofile(tmp_path / "in.f32")
    result = subprocess.run([str(cpp_binary), str(package_path), str(tmp_path / "in.f32"),
                             str(tmp_path / "out.f32"), "--size", "24x16"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    cpp = np.fromfile(tmp_path / "out.f32", np.float32).reshape(96, 64)
    assert np.abs(cpp - package(torch.from_numpy(lr)[None, None])[0, 0].numpy()).max() <= 1e-6


def test_upscale_accepts_the_package(both_formats, tmp_path):
    """`cxr-sr upscale --model X.pt2` works like the TorchScript file."""
    from tests.export_helpers import write_png

    _, package_path = both_formats
    image = write_png(tmp_path / "x.png", smooth_image(20, 20))
    assert cxr_sr(["upscale", "--model", str(package_path), "-i", str(image), "-o", str(tmp_path / "o"),
                   "--no-progress"]) == 0
