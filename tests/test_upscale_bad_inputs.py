"""Bad input: each a one-line error naming the file; the rest still processed; non-zero exit."""
from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from launch.cli import main as cxr_sr
from tests.export_helpers import ToyGenerator, export_model, smooth_image, write_png


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return export_model(tmp_path_factory.mktemp("toy") / "toy.pt", ToyGenerator())


def _bad_files(folder: Path) -> dict[str, Path]:
    good = write_png(folder / "good.png", smooth_image(32, 32))
    truncated = folder / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("this is text, not an image\n")
    write_png(folder / "tiny.png", smooth_image(5, 5))
    return {"truncated": truncated, "empty": folder / "empty.png", "non-image": folder / "notes.png",
            "tiny": folder / "tiny.png"}


def test_each_bad_file_is_one_line_and_the_rest_go_through(toy_model, tmp_path, capsys):
    """Zero-byte, truncated, non-image and tiny files fail one by one; good files still come out."""
    folder = tmp_path / "in"
    folder.mkdir()
    bad = _bad_files(folder)
    inputs = [folder / "good.png", *bad.values(), folder / "good.png"]
    code = cxr_sr(["upscale", "--model", str(toy_model), "-i", *map(str, inputs), "-o",
                   str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad)
    for path, line in zip(bad.values(), errors):
        assert str(path) in line
    assert "zero-byte" in errors[1] and "8 px" in errors[3]
    assert (tmp_path / "out" / "good.png").exists() and (tmp_path / "out" / "good-1.png").exists()
    report = json.loads((tmp_path / "out" / "upscale_report.json").read_text())
    assert report["summary"] == {**report["summary"], "ok": 2, "failed": 4}


def test_a_file_that_is_not_a_model(tmp_path, capsys):
    """A text file or a plain state_dict given as --model: one line naming it, exit 2."""
    import torch

    not_zip = tmp_path / "model.pt"
    not_zip.write_text("weights would be here")
    state_dict = tmp_path / "weights.pt"
    torch.save(ToyGenerator().state_dict(), state_dict)
    image = write_png(tmp_path / "x.png", smooth_image(16, 16))
    for model in (not_zip, state_dict):
        assert cxr_sr(["upscale", "--model", str(model), "-i", str(image), "-o", str(tmp_path / "o"),
                       "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {model}:") and "\n" not in err


def test_a_model_of_another_scale(tmp_path, capsys):
    """A x2 model where x4 is expected is refused with one line naming the model file."""
    model = export_model(tmp_path / "x2.pt", ToyGenerator(scale=2), scale=2)
    image = write_png(tmp_path / "x.png", smooth_image(16, 16))
    assert cxr_sr(["upscale", "--model", str(model), "-i", str(image), "-o", str(tmp_path / "o"),
                   "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {model}:") and "x2" in err and "\n" not in err
    assert cxr_sr(["upscale", "--model", str(model), "-i", str(image), "-o", str(tmp_path / "o"),
                   "--no-progress", "--scale", "2"]) == 0


@pytest.mark.slow
def test_huge_20000_square_goes_through_tiling_in_bounded_memory(toy_model, tmp_path):
    """A 20,000 x 20,000 PNG (80,000 px square out, 6.4 GB as 8-bit) in far less memory than that.

    Runs in a subprocess so that its peak resident memory can be measured on its own.
    """
    source = tmp_path / "huge.png"
    Image.new("L", (20_000, 20_000), 128).save(source, compress_level=1)
    out_dir = tmp_path / "out"
    script = ("import sys; from launch.cli import main; "
              f"sys.exit(main(['upscale', '--model', {str(toy_model)!r}, '-i', {str(source)!r}, "
              f"'-o', {str(out_dir)!r}, '--tile', '512', '--overlap', '16', '--no-progress']))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=3600,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    assert peak_gb < 3.0, f"peak RSS {peak_gb:.1f} GB"
    # Pillow refuses to open 6.4 gigapixels (its bomb guard), so read the PNG header and first row
    with (out_dir / "huge.png").open("rb") as png:
        head = png.read(33)
        assert struct.unpack(">II", head[16:24]) == (80_000, 80_000) and head[24] == 8
        first_row = _first_png_row(png, 80_000)
    # a flat input gives a flat row away from the corners (the top border is uniformly shifted
    # by the toy model's zero-padded conv): a tile seam along it would break that
    assert np.ptp(first_row[64:-64]) == 0
    assert png_ends_with_iend(out_dir / "huge.png")


def png_ends_with_iend(path: Path) -> bool:
    with path.open("rb") as png:
        png.seek(-12, 2)
        return png.read(12)[4:8] == b"IEND"


def _first_png_row(png, width: int) -> np.ndarray:
    """Decompresses IDAT chunks until one filtered 8-bit row is available (filter 0 expected)."""
    inflater, data = zlib.decompressobj(), b""
    while len(data) < width + 1:
        length, kind = struct.unpack(">I4s", png.read(8))
        chunk = png.read(length + 4)[:length]
        if kind == b"IDAT":
            data += inflater.decompress(chunk)
    assert data[0] == 0
    return np.frombuffer(data[1:width + 1], np.uint8)
