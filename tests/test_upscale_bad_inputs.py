"""Bad input: each a one-line error naming the file; the rest still processed; non-zero exit."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from launch.cli import main as cxr_sr
from tests.bad_input_helpers import one_error, snapshot
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
    # measured by a fresh parent whose only child is the upscale: this test process's own
    # RUSAGE_CHILDREN is the largest of every subprocess the session has run before
    wrapper = ("import resource, subprocess, sys; "
               f"code = subprocess.run([sys.executable, '-c', {script!r}]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=3600,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    peak_gb = int(result.stdout.split()[-1]) / 2**20
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


class _Upsample(torch.nn.Module):
    """Nearest x4, then a per-image fault for bright inputs (mean above 0.6): the 8 x 8 probe of
    zeros at load time passes, so the fault shows only on some images."""

    def __init__(self, fault: str):
        super().__init__()
        self.fault = fault

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = torch.nn.functional.interpolate(x, scale_factor=4.0, mode="nearest")
        bright = x.mean(dim=(1, 2, 3), keepdim=True) > 0.6
        if self.fault == "raise":
            if bool(bright.any()):
                raise RuntimeError("kernel exploded")
            return up
        if self.fault == "nan":
            return torch.where(bright, torch.full_like(up, float("nan")), up)
        if self.fault == "range":
            return torch.where(bright, up * 3.0, up)
        return up * float("nan")  # "always-nan"


def _scripted_model(path: Path, fault: str) -> Path:
    """A TorchScript file with the meta of `cxr-sr export`, made by hand: the exporter's parity
    check would (rightly) refuse these models."""
    from export.jit_warnings import quiet_jit_deprecation
    from export.meta import META_FILE, build_meta, dumps

    with quiet_jit_deprecation():
        torch.jit.save(torch.jit.script(_Upsample(fault)), str(path), _extra_files={META_FILE: dumps(build_meta(4))})
    return path


def _dark_and_bright(folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    dark = write_png(folder / "dark.png", np.full((16, 16), 0.2, np.float32))
    bright = write_png(folder / "bright.png", np.full((16, 16), 0.9, np.float32))
    return dark, bright


@pytest.mark.parametrize("fault, fragment", [("nan", "non-finite values"), ("range", "outside [0, 1]"),
                                             ("raise", "failed: ")])
def test_a_bad_model_output_fails_that_image_only(tmp_path, capsys, fault, fragment):
    """NaN output once gave "2/2 upscaled" and all-black PNGs; an error inside the model was a
    traceback. Now the image fails with one line naming the model and the image; the rest work."""
    model = _scripted_model(tmp_path / f"{fault}.pt", fault)
    dark, bright = _dark_and_bright(tmp_path / "in")
    before = snapshot(tmp_path / "in", model)
    out = tmp_path / "out"
    assert cxr_sr(["upscale", "--model", str(model), "-i", str(dark), str(bright), "-o", str(out),
                   "--no-progress", "--batch-size", "2"]) == 1
    line = one_error(capsys.readouterr().err, str(bright), model.name, fragment)
    assert "Traceback" not in line and (fault != "raise" or "kernel exploded" in line)
    assert sorted(p.name for p in out.iterdir()) == ["dark.png", "upscale_report.json"]
    report = json.loads((out / "upscale_report.json").read_text())
    assert report["summary"] == {**report["summary"], "ok": 1, "failed": 1}
    assert snapshot(tmp_path / "in", model) == before


def test_a_model_that_is_always_nan_is_refused_at_load(tmp_path, capsys):
    """Non-finite output on the load-time probe: refused before any image, exit 2."""
    model = _scripted_model(tmp_path / "nan.pt", "always-nan")
    dark, _ = _dark_and_bright(tmp_path / "in")
    assert cxr_sr(["upscale", "--model", str(model), "-i", str(dark), "-o", str(tmp_path / "out"),
                   "--no-progress"]) == 2
    one_error(capsys.readouterr().err, str(model), "non-finite")
    assert not (tmp_path / "out" / "dark.png").exists()


def test_a_training_checkpoint_as_model_says_to_export(tmp_path, capsys):
    """The run folder, its checkpoint folder and the trainer.pt inside it all point at `cxr-sr export`."""
    from tests.export_helpers import write_fake_run

    write_fake_run(tmp_path / "run")
    checkpoint = next((tmp_path / "run" / "checkpoints").iterdir())
    image = write_png(tmp_path / "x.png", smooth_image(16, 16))
    for model in (tmp_path / "run", checkpoint, checkpoint / "trainer.pt"):
        before = snapshot(tmp_path / "run")
        assert cxr_sr(["upscale", "--model", str(model), "-i", str(image), "-o", str(tmp_path / "o"),
                       "--no-progress"]) == 2
        one_error(capsys.readouterr().err, f"error: {model}:", "cxr-sr export --run")
        assert snapshot(tmp_path / "run") == before


def test_a_folder_lists_every_file_it_skips_and_takes_jpeg_tiff_and_bare_dicom(toy_model, realxray_dir,
                                                                                  tmp_path, capsys):
    """A folder of JPEGs gave "0/0 upscaled" with no reason. JPEG, TIFF and a DICOM without a suffix
    are now taken (the list `prep shard` uses); a README, a hidden file and a hidden folder are
    skipped and each is listed in the report with the reason."""
    folder = tmp_path / "in"
    (folder / ".cache").mkdir(parents=True)
    pixels = np.rint(smooth_image(24, 24) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "a.jpg", quality=95)
    Image.fromarray(pixels).save(folder / "b.tiff")
    dicom = next(realxray_dir.glob("*.dcm"))
    (folder / "c_dicom").write_bytes(dicom.read_bytes())
    (folder / "README").write_text("about these scans")
    (folder / "notes.txt").write_text("notes")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / ".cache" / "x.png").write_bytes(b"")
    before = snapshot(folder)
    out = tmp_path / "out"
    assert cxr_sr(["upscale", "--model", str(toy_model), "-i", str(folder), "-o", str(out), "--no-progress",
                   "--tile", "0", "--output-format", "png", "--max-input-pixels", str(10**8)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "3/3 upscaled" in err and "4 skipped" in err
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png", "c_dicom.png"]
    report = json.loads((out / "upscale_report.json").read_text())
    skipped = {Path(r["input"]).name: r["error"] for r in report["images"] if r["status"] == "skipped"}
    assert skipped == {"README": "no suffix and no DICOM marker", ".DS_Store": "hidden file",
                       ".cache": "hidden folder", "notes.txt": skipped["notes.txt"]}
    assert skipped["notes.txt"].startswith("suffix .txt is not one of .png .jpg")
    assert snapshot(folder) == before


def test_a_folder_without_images_says_why(toy_model, tmp_path, capsys):
    """Nothing to do is an error (exit 1) that says the files were skipped, not a silent 0/0."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "scan.bmp2").write_bytes(b"BM")
    assert cxr_sr(["upscale", "--model", str(toy_model), "-i", str(folder), "-o", str(tmp_path / "out"),
                   "--no-progress"]) == 1
    one_error(capsys.readouterr().err, "no image found in the inputs", "1 file(s) skipped")


def test_bench_quality_goes_on_past_a_bad_image_and_keeps_stdout_for_json(toy_model, tmp_path, capsys):
    """`bench quality` stopped at the first bad image and printed the error on stdout, where the
    JSON goes. Now each bad image is one line on stderr, the rest are measured, exit code 1."""
    folder = tmp_path / "hr"
    folder.mkdir()
    for seed in range(2):
        write_png(folder / f"{seed}.png", smooth_image(64, 64, seed=seed))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    write_png(folder / "small.png", smooth_image(12, 12))
    before = snapshot(folder, toy_model)
    assert cxr_sr(["bench", "quality", "--model", str(toy_model), "-i", str(folder), "--crop-px", "0"]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in captured.err and len(errors) == 2
    assert "broken.png" in errors[0] and "small.png" in errors[1] and "at least 32 px" in errors[1]
    document = json.loads(captured.out)
    assert len(document["images"]) == 2 and len(document["failed"]) == 2
    assert snapshot(folder, toy_model) == before


def test_bench_quality_with_a_missing_device_is_one_line_on_stderr(toy_model, tmp_path, capsys):
    """The device is checked before the model is blamed, and nothing goes to stdout."""
    image = write_png(tmp_path / "a.png", smooth_image(64, 64))
    assert cxr_sr(["bench", "quality", "--model", str(toy_model), "-i", str(image), "--device", "tpu"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    one_error(captured.err, "--device tpu")
