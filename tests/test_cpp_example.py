"""The C++ example (export/cpp) builds against the pip wheel's libtorch and matches Python.

The build takes ~30 s on the 2-core CI box, so it happens once per source version: into the
cache folder of export/cpp_cache.py, outside the repository (keyed by the sources, torch and
Python). libtorch is found through the Python running the tests (-DPython3_EXECUTABLE), as
`cmake -S export/cpp -B build` finds it through the active virtualenv.
"""
from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from export.cpp_cache import BINARY_NAME, CPP_SOURCE, build_folder
from export.image_io import read_image
from export.torchscript import load_torchscript
from launch.cli import main as cxr_sr
from tests.export_helpers import exported_fake_run, smooth_image, write_png

@pytest.fixture(scope="session")
def cpp_binary() -> Path:
    """The built `cxr_sr_upscale`, configured and compiled at most once per source version."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (apt-get install cmake g++)")
    build = build_folder()
    binary = build / BINARY_NAME
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".lock", "w") as lock:  # two pytest sessions at once build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            for command in (["cmake", "-S", str(CPP_SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                             f"-DPython3_EXECUTABLE={sys.executable}"],
                            ["cmake", "--build", str(build), "-j", "2"]):
                result = subprocess.run(command, capture_output=True, text=True, timeout=900)
                assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return binary


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory) -> Path:
    """A TorchScript file made by `cxr-sr export` from a tiny-config checkpoint."""
    return exported_fake_run(tmp_path_factory.mktemp("cpp"))


def _run_cpp(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=300)


def _max_raw_difference(binary: Path, model_path: Path, folder: Path, height: int, width: int) -> float:
    """Largest |C++ - Python| of the model on one raw float32 image."""
    module, _ = load_torchscript(model_path)
    lr = smooth_image(height, width)
    lr.tofile(folder / "in.f32")
    result = _run_cpp(binary, str(model_path), str(folder / "in.f32"), str(folder / "out.f32"),
                      "--size", f"{height}x{width}")
    assert result.returncode == 0, result.stderr
    cpp = np.fromfile(folder / "out.f32", np.float32).reshape(4 * height, 4 * width)
    python = module(torch.from_numpy(lr)[None, None])[0, 0].detach().numpy()
    return float(np.abs(cpp - python).max())


def test_raw_float_output_identical_to_python(cpp_binary, exported_run, tmp_path):
    """On raw float32 input the C++ output equals Python's to float precision (same graph, same kernels)."""
    assert _max_raw_difference(cpp_binary, exported_run, tmp_path, 20, 28) <= 1e-6


def test_png_output_matches_cxr_sr_upscale(cpp_binary, exported_run, realxray_dir, tmp_path):
    """A real radiograph crop through C++ and through `cxr-sr upscale`: identical pixels.

    Both quantise round(255 v) with round-half-to-even; we require identity, not just 1 level.
    """
    real = read_image(realxray_dir / "00000100_000.png").to_unit()  # the RGBA one: gray reduction too
    crop = write_png(tmp_path / "crop.png", real[400:464, 300:348])
    result = _run_cpp(cpp_binary, str(exported_run), str(crop), str(tmp_path / "cpp.png"))
    assert result.returncode == 0, result.stderr
    assert cxr_sr(["upscale", "--model", str(exported_run), "-i", str(crop), "-o", str(tmp_path / "py"),
                   "--tile", "0", "--no-progress"]) == 0
    cpp = np.asarray(Image.open(tmp_path / "cpp.png"), np.int32)
    python = np.asarray(Image.open(tmp_path / "py" / "crop.png"), np.int32)
    assert cpp.shape == python.shape == (256, 192)
    assert np.abs(cpp - python).max() == 0


def test_16bit_pgm_round_trip(cpp_binary, exported_run, tmp_path):
    """16-bit PGM in, 16-bit PGM out, within 1 level of 65535 of Python's float output."""
    module, _ = load_torchscript(exported_run)
    levels = np.rint(smooth_image(16, 12) * 65535).astype(">u2")
    (tmp_path / "in.pgm").write_bytes(b"P5\n12 16\n65535\n" + levels.tobytes())
    result = _run_cpp(cpp_binary, str(exported_run), str(tmp_path / "in.pgm"), str(tmp_path / "out.pgm"))
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "out.pgm").read_bytes()
    header = b"P5\n48 64\n65535\n"
    assert data.startswith(header)
    cpp = np.frombuffer(data[len(header):], ">u2").reshape(64, 48).astype(np.float64)
    python = module(torch.from_numpy(levels.astype(np.float32) / 65535)[None, None])[0, 0].detach().numpy()
    assert np.abs(cpp - np.rint(python.astype(np.float64) * 65535)).max() <= 1


def test_bad_model_is_one_line_error(cpp_binary, tmp_path):
    """A file that is not a model gives a one-line error and exit code 1, not a C++ backtrace."""
    (tmp_path / "bad.pt").write_text("not a model")
    smooth_image(8, 8).tofile(tmp_path / "in.f32")
    result = _run_cpp(cpp_binary, str(tmp_path / "bad.pt"), str(tmp_path / "in.f32"), str(tmp_path / "o.f32"),
                      "--size", "8x8")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and result.stderr.startswith("error:")


@pytest.mark.parametrize("size", ["abcx12", "12x", "0x8", "-3x8"])
def test_bad_size_prints_usage(cpp_binary, tmp_path, size):
    """`--size abcx12` was parsed outside main's try: std::stoll's exception ended the program
    with a C++ terminate message instead of the usage line."""
    result = _run_cpp(cpp_binary, "m.pt", "in.f32", "out.f32", "--size", size)
    assert result.returncode == 2 and result.stderr.startswith("error: --size must be HxW")
    assert "usage:" in result.stderr and "terminate" not in result.stderr


def test_colour_png_reduced_to_gray_like_python(cpp_binary, exported_run, tmp_path):
    """Colour PNGs were reduced with libpng's default Rec.709 weights, Python with ITU-R 601-2
    (Pillow's convert("L")): pure red became gray 54 in C++ and 76 in Python. libpng's fixed
    point may round one level differently, hence a tolerance of 2 levels after the model."""
    module, _ = load_torchscript(exported_run)
    rng = np.random.default_rng(3)
    colours = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    Image.fromarray(colours, "RGB").save(tmp_path / "colour.png")
    result = _run_cpp(cpp_binary, str(exported_run), str(tmp_path / "colour.png"), str(tmp_path / "out.f32"))
    assert result.returncode == 0, result.stderr
    cpp = np.fromfile(tmp_path / "out.f32", np.float32).reshape(64, 48)
    python = module(torch.from_numpy(read_image(tmp_path / "colour.png").to_unit())[None, None])[0, 0].detach().numpy()
    assert np.abs(cpp - python).max() <= 2 / 255


def test_compact_generator_runs_in_cpp_like_python(cpp_binary, tmp_path):
    """CompactSR (the CPU recipe's and the shipped model's architecture) needs nothing new in C++:
    its raw float output equals Python's."""
    model_path = exported_fake_run(tmp_path, arch="compact")
    assert _max_raw_difference(cpp_binary, model_path, tmp_path, 24, 20) <= 1e-6
