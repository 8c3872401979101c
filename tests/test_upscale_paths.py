"""`cxr-sr upscale` never writes into its inputs, and checks its output paths before any work.

An output folder that is, lies in or contains an input once made the command overwrite a user's
originals (or upscale its own outputs again on the next run); unusable paths ended in tracebacks
after every image had been computed. Each case: exit code, one error line, no traceback, and
the inputs byte for byte as they were.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from launch.cli import main as cxr_sr
from tests.bad_input_helpers import error_lines, one_error, run_cli, snapshot
from tests.export_helpers import ToyGenerator, export_model, smooth_image, write_png


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return export_model(tmp_path_factory.mktemp("toy") / "toy.pt", ToyGenerator())


@pytest.fixture
def scans(tmp_path) -> Path:
    """A user's folder: two PNGs and a subfolder with one more."""
    folder = tmp_path / "scans"
    (folder / "sub").mkdir(parents=True)
    write_png(folder / "a.png", smooth_image(24, 24, seed=1))
    write_png(folder / "b.png", smooth_image(24, 24, seed=2))
    write_png(folder / "sub" / "c.png", smooth_image(24, 24, seed=3))
    return folder


def _upscale(model: Path, inputs: list[Path], out: Path, *extra: str) -> int:
    return cxr_sr(["upscale", "--model", str(model), "-i", *map(str, inputs), "-o", str(out), "--no-progress", *extra])


@pytest.mark.parametrize("case, fragment", [
    ("out is the input folder", "is the input folder"),
    ("out inside the input folder", "lies inside the input folder"),
    ("out contains the input folder", "contains the input"),
    ("out holds a named input file", "contains the input"),
    ("report is an input file", "is an input file"),
    ("report not .json or .csv", "must end in .json or .csv"),
    ("report inside the input folder", "lies inside the input folder"),
])
def test_outputs_never_land_on_or_among_inputs(toy_model, scans, tmp_path, capsys, case, fragment):
    """Each layout that would write where originals live is refused before any image is read."""
    inputs, out, extra = {
        "out is the input folder": ([scans], scans, []),
        "out inside the input folder": ([scans], scans / "sr", []),
        "out contains the input folder": ([scans / "sub"], scans, []),
        "out holds a named input file": ([scans / "a.png"], scans, []),
        "report is an input file": ([scans / "a.png"], tmp_path / "out", ["--report", str(scans / "a.png")]),
        "report not .json or .csv": ([scans / "sub"], tmp_path / "out", ["--report", str(scans / "a.png")]),
        "report inside the input folder": ([scans], tmp_path / "out", ["--report", str(scans / "r.json")]),
    }[case]
    before = snapshot(scans)
    assert _upscale(toy_model, inputs, out, *extra) == 2
    err = capsys.readouterr().err
    one_error(err, fragment)
    assert "upscaled" not in err  # refused before the work, not after it
    assert snapshot(scans) == before
    assert not (scans / "sr").exists()


def test_a_second_run_over_the_same_tree_does_not_upscale_its_own_outputs(toy_model, scans, tmp_path, capsys):
    """`-o scans/sr` once produced a-1.png at 16x on the next run; an output folder outside works."""
    before = snapshot(scans)
    assert _upscale(toy_model, [scans], tmp_path / "sr") == 0
    assert _upscale(toy_model, [scans], tmp_path / "sr") == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["a.png", "b.png", "c.png", "upscale_report.json"]
    assert Image.open(tmp_path / "sr" / "a.png").size == (96, 96)
    assert snapshot(scans) == before


@pytest.mark.parametrize("case", ["out is a file", "out below a file", "report is a folder"])
def test_unusable_output_paths_are_one_line(toy_model, scans, tmp_path, capsys, case):
    """A file where the output folder should be, or a folder where the report should be."""
    (tmp_path / "taken").write_text("a user's file")
    (tmp_path / "folder.json").mkdir()
    out, extra = {"out is a file": (tmp_path / "taken", []),
                  "out below a file": (tmp_path / "taken" / "sr", []),
                  "report is a folder": (tmp_path / "out", ["--report", str(tmp_path / "folder.json")])}[case]
    before = snapshot(scans, tmp_path / "taken")
    assert _upscale(toy_model, [scans], out, *extra) == 2
    one_error(capsys.readouterr().err, "error: -o" if case.startswith("out") else "error: --report")
    assert snapshot(scans, tmp_path / "taken") == before


@pytest.mark.parametrize("which", ["out", "report"])
def test_an_unwritable_output_or_report_folder_stops_before_the_work(toy_model, tmp_path, which):
    """Every image was computed and then failed with "Permission denied", then a traceback while
    writing the report. Run without root's override of folder modes, where the suite is root."""
    scans = tmp_path / "scans"
    scans.mkdir()
    write_png(scans / "a.png", smooth_image(24, 24))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    out = locked / "sr" if which == "out" else tmp_path / "out"
    extra = [] if which == "out" else ["--report", str(locked / "report.json")]
    before = snapshot(scans, toy_model)
    try:
        result = run_cli(["upscale", "--model", str(toy_model), "-i", str(scans), "-o", str(out), "--no-progress",
                          *extra], honour_modes=True)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2, result.stderr
    one_error(result.stderr, "not writable")
    assert "upscaled" not in result.stderr
    assert snapshot(scans, toy_model) == before
    assert not list(locked.iterdir())


def _noise_pngs(folder: Path, count: int, side_px: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):  # noise does not compress: each output is about (4 * side)^2 bytes
        path = folder / f"n{index}.png"
        Image.fromarray(rng.integers(0, 256, (side_px, side_px), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_disk_full_mid_run_stops_with_one_line_and_leaves_no_partial_file(toy_model, tmp_path):
    """Under a 20 kB file-size limit the small first image fits, the large ones do not (EFBIG, as
    a full disk gives ENOSPC): the run stops with one line per failure, exit 1, no temp file, no
    torn output under a final name, and the report says which images were not attempted."""
    scans = tmp_path / "scans"
    _noise_pngs(scans, 3)
    write_png(scans / "a_small.png", smooth_image(16, 16))
    out = tmp_path / "out"
    before = snapshot(scans, toy_model)
    result = run_cli(["upscale", "--model", str(toy_model), "-i", str(scans), "-o", str(out), "--no-progress",
                      "--batch-size", "1"], file_size_bytes=20_000)
    assert result.returncode == 1, result.stderr
    errors = error_lines(result.stderr)
    assert any("File too large" in line for line in errors) and any("disk is full" in line for line in errors)
    assert sorted(p.name for p in out.iterdir()) == ["a_small.png", "upscale_report.json"]
    assert Image.open(out / "a_small.png").size == (64, 64)
    report = json.loads((out / "upscale_report.json").read_text())
    assert report["summary"]["ok"] == 1 and report["summary"]["failed"] == 3
    assert sum("not attempted" in (r["error"] or "") for r in report["images"]) == 2
    assert snapshot(scans, toy_model) == before


def test_disk_full_for_the_report_too_is_one_line(toy_model, tmp_path):
    """Nothing fits at all (limit 1 byte): every write fails, the report too, still no traceback."""
    scans = tmp_path / "scans"
    _noise_pngs(scans, 2, side_px=16)
    out = tmp_path / "out"
    result = run_cli(["upscale", "--model", str(toy_model), "-i", str(scans), "-o", str(out), "--no-progress"],
                     file_size_bytes=1)
    assert result.returncode == 1, result.stderr
    assert any("cannot write the report" in line for line in error_lines(result.stderr))
    assert list(out.iterdir()) == []


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid -= 1


def test_temp_files_of_a_killed_run_are_removed_by_the_next(toy_model, scans, tmp_path, capsys):
    """`kill -9` leaves `.NAME.PID.tmp` (and the streamed PNG writer's) behind; the next run
    removes those of dead processes, keeps a live writer's and a user's own hidden file."""
    out = tmp_path / "out"
    out.mkdir()
    dead, live = _dead_pid(), os.getppid()
    stale = [out / f".a.png.{dead}.tmp", out / f".big.png.{dead}.tmp"]
    for path in stale:
        path.write_bytes(b"half a png")
    kept = [out / f".b.png.{live}.tmp", out / ".notes"]
    for path in kept:
        path.write_bytes(b"keep")
    assert _upscale(toy_model, [scans / "a.png"], out) == 0
    assert "removed 2 temporary file(s)" in capsys.readouterr().err
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)


@pytest.mark.parametrize("device, fragment", [
    ("tpu", "expected cpu, cuda, cuda:N or mps"),
    ("cuda:x", "expected cpu, cuda, cuda:N or mps"),
    ("cpu:1", "expected cpu, cuda, cuda:N or mps"),
    ("cuda:99", "CUDA device"),
])
def test_device_names_and_missing_devices_are_one_line(toy_model, scans, tmp_path, capsys, device, fragment):
    """`--device tpu` was a traceback; a missing GPU was blamed on the model file."""
    assert _upscale(toy_model, [scans], tmp_path / "out", "--device", device) == 2
    line = one_error(capsys.readouterr().err, f"--device {device}", fragment)
    assert str(toy_model) not in line


def test_cuda_and_mps_when_absent_say_so(toy_model, scans, tmp_path, capsys):
    """On a machine without the device, one line says it is not there and to use cpu."""
    import torch

    absent = [name for name, there in (("cuda", torch.cuda.is_available()),
                                       ("mps", torch.backends.mps.is_available())) if not there]
    if not absent:
        pytest.skip("both CUDA and MPS are present")
    for device in absent:
        assert _upscale(toy_model, [scans], tmp_path / "out", "--device", device) == 2
        one_error(capsys.readouterr().err, "is available here (use --device cpu)")
