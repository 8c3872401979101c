"""`cxr-sr upscale`: outputs, tiling, batching, bit depths and the report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.tiling import upscale_tiled
from launch.cli import main as cxr_sr
from tests.export_helpers import ToyGenerator, export_model, smooth_image, tiny_generator, write_png


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return export_model(tmp_path_factory.mktemp("toy") / "toy.pt", ToyGenerator())


@pytest.fixture(scope="module")
def srresnet_model(tmp_path_factory) -> Path:
    return export_model(tmp_path_factory.mktemp("srresnet") / "tiny.pt", tiny_generator())


def _upscale(model: Path, inputs: list[Path], out_dir: Path, *extra: str) -> int:
    return cxr_sr(["upscale", "--model", str(model), "-i", *map(str, inputs), "-o", str(out_dir),
                   "--no-progress", *extra])


def test_tiled_equals_untiled_within_one_gray_level(srresnet_model, tmp_path):
    """Tiles with overlap and blending match whole-image inference within 1 gray level.

    A real SRResNet (receptive field of tens of px) is used, and the same tiling without
    overlap is shown to produce visible seams, so the check can fail.
    """
    source = write_png(tmp_path / "in.png", smooth_image(90, 70))
    results = {}
    for name, options in {"whole": ["--tile", "0"], "tiled": ["--tile", "32", "--overlap", "16"],
                          "seams": ["--tile", "32", "--overlap", "0"]}.items():
        assert _upscale(srresnet_model, [source], tmp_path / name, *options) == 0
        results[name] = np.asarray(Image.open(tmp_path / name / "in.png"), np.int32)
    assert results["whole"].shape == (360, 280)
    assert np.abs(results["tiled"] - results["whole"]).max() <= 1
    assert np.abs(results["seams"] - results["whole"]).max() > 1


def test_tiling_emits_rows_band_by_band():
    """Bounded memory: rows leave `upscale_tiled` one tile band at a time, never the whole output."""
    image = smooth_image(200, 40)
    blocks: list[int] = []
    upscale_tiled(lambda rows, cols: image[rows, cols], 200, 40, 2,
                  run_batch=lambda lr: lr.repeat_interleave(2, -1).repeat_interleave(2, -2),
                  emit_rows=lambda rows: blocks.append(rows.shape[0]), tile_px=32, overlap_px=8)
    assert sum(blocks) == 400 and len(blocks) >= 6 and max(blocks) <= 2 * (32 + 8)


def test_folder_batching_bit_depths_and_report(toy_model, tmp_path):
    """A folder of 8-bit, 16-bit and RGBA PNGs: same depth out, gray out, a report per image."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):  # three same-size images: one batch of 2 and one of 1
        write_png(folder / f"gray8_{index}.png", smooth_image(24, 20, seed=index))
    write_png(folder / "gray16.png", smooth_image(24, 20), bit_depth=16)
    rgba = np.rint(smooth_image(16, 16) * 255).astype(np.uint8)
    Image.fromarray(np.stack([rgba] * 3 + [np.full_like(rgba, 255)], -1), "RGBA").save(folder / "rgba.png")
    (folder / "README.md").write_text("not an image: skipped, and listed in the report with why")
    report = tmp_path / "report.csv"
    assert _upscale(toy_model, [folder], tmp_path / "out", "--batch-size", "2", "--report", str(report)) == 0
    out16 = Image.open(tmp_path / "out" / "gray16.png")
    assert out16.mode.startswith("I") and np.asarray(out16).max() > 255 and out16.size == (80, 96)
    assert Image.open(tmp_path / "out" / "rgba.png").mode == "L"
    rows = report.read_text().splitlines()
    assert len(rows) == 1 + 5 + 1 and "consistency_psnr_db" in rows[0]
    assert sum(",ok," in row for row in rows[1:]) == 5
    assert any("README.md,skipped,suffix .md is not one of" in row for row in rows[1:])


def test_data_consistency_step_raises_the_consistency_figure(toy_model, tmp_path):
    """The optional hard data-consistency step brings down(SR) towards the input (figure before/after)."""
    source = write_png(tmp_path / "in.png", smooth_image(40, 40))
    assert _upscale(toy_model, [source], tmp_path / "out", "--data-consistency") == 0
    image = json.loads((tmp_path / "out" / "upscale_report.json").read_text())["images"][0]
    # float(): an exact match is infinite PSNR, written as "inf" in the (strict) JSON
    assert float(image["consistency_after_dc_psnr_db"]) > float(image["consistency_psnr_db"]) + 3


def test_real_folder_of_pngs_and_dicoms(toy_model, realxray_dir, tmp_path):
    """The real files of ../shared/realxray (RGBA PNG, 15-bit MONOCHROME1 CR, JPEG DICOM) all go through."""
    picks = [realxray_dir / "00000100_000.png", realxray_dir / "00000001_000.png",
             *sorted(realxray_dir.glob("siim_*.dcm"))]
    assert _upscale(toy_model, picks, tmp_path / "out") == 0
    document = json.loads((tmp_path / "out" / "upscale_report.json").read_text())
    assert document["summary"]["ok"] == len(picks)
    assert all(image["consistency_psnr_db"] > 30 for image in document["images"])


def test_upscale_app_and_quality_bench_tile_one_image_alike(toy_model, tmp_path, monkeypatch):
    """`cxr-sr upscale`, the app and the quality bench must give one image one SR: all three call
    export.tiling.upscale_image with the same overlap; this records what reaches the tiler."""
    import torch

    import export.tiling
    from benchmarks.quality import _restore
    from export.model_file import load_exported
    from launch.app import processing

    calls: list[tuple[int, int]] = []
    real_tiled = export.tiling.upscale_tiled

    def recording(*args, tile_px, overlap_px, **kwargs):
        calls.append((tile_px, overlap_px))
        return real_tiled(*args, tile_px=tile_px, overlap_px=overlap_px, **kwargs)

    monkeypatch.setattr(export.tiling, "upscale_tiled", recording)
    model = load_exported(toy_model)
    lr = smooth_image(300, 270)
    app_sr = processing.upscale(model, lr)
    bench_sr = _restore(model, torch.from_numpy(lr)[None, None], 4, 256)[0, 0].numpy()
    assert _upscale(toy_model, [write_png(tmp_path / "in.png", lr)], tmp_path / "out") == 0
    assert calls == [(256, 32)] * 3
    assert np.array_equal(app_sr, bench_sr)
