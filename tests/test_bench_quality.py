"""`cxr-sr bench quality` and `bench throughput`: their documents, tables and figure (no timings)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmarks.quality import mean_interval
from launch.cli import main as cxr_sr
from tests.export_helpers import ToyGenerator, export_model, smooth_image, write_png


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return export_model(tmp_path_factory.mktemp("toy") / "toy.pt", ToyGenerator())


def test_mean_interval_matches_a_hand_computation():
    """95% Student-t interval: mean 2, sd 1, n 3 -> 4.303 / sqrt(3)."""
    stat = mean_interval([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["ci95"] == pytest.approx(4.303 / 3 ** 0.5)
    assert mean_interval([5.0])["ci95"] is None


def test_quality_document_table_and_figure(toy_model, tmp_path, capsys):
    """Per-image and mean figures for model, bicubic and lanczos; the bicubic PSNR is the protocol's."""
    from dist_train.degradation import bicubic_upsample, downsample
    from dist_train.metrics import psnr_per_image

    folder = tmp_path / "hr"
    folder.mkdir()
    for seed in range(3):
        write_png(folder / f"{seed}.png", smooth_image(64, 72, seed=seed))
    out = tmp_path / "quality.json"
    assert cxr_sr(["bench", "quality", "--model", str(toy_model), "-i", str(folder), "--crop-px", "0",
                   "--json", str(out), "--markdown", str(tmp_path / "q.md"), "--figure", str(tmp_path / "q.png")]) == 0
    table = capsys.readouterr().err
    assert "| model |" in table and "| bicubic |" in table and "| lanczos |" in table
    document = json.loads(out.read_text())
    assert len(document["images"]) == 3 and {"machine", "date", "command"} <= set(document["header"])
    means = [r["bicubic"]["psnr_db"] for r in document["images"]]
    assert document["summary"]["bicubic"]["psnr_db"]["mean"] == pytest.approx(sum(means) / 3)
    hr = torch.from_numpy(__import__("numpy").asarray(Image.open(folder / "0.png"), "float32") / 255)[None, None]
    expected = float(psnr_per_image(bicubic_upsample(downsample(hr, 4), 4).clamp(0, 1), hr, 4)[0])
    assert document["images"][0]["bicubic"]["psnr_db"] == pytest.approx(expected)
    assert Image.open(tmp_path / "q.png").size[0] == 7 * 192
    assert "Command:" in (tmp_path / "q.md").read_text()


def test_several_models_side_by_side_share_the_baselines_and_the_figure(toy_model, tmp_path, capsys):
    """Two models: one row each in the table, both in every image's figures and in the figure."""
    folder = tmp_path / "hr"
    folder.mkdir()
    write_png(folder / "0.png", smooth_image(64, 72, seed=0))
    out = tmp_path / "quality.json"
    assert cxr_sr(["bench", "quality", "--model", str(toy_model), str(toy_model), "--label", "psnr", "gan",
                   "-i", str(folder), "--crop-px", "0", "--json", str(out), "--figure", str(tmp_path / "q.png")]) == 0
    assert "| psnr |" in capsys.readouterr().err
    document = json.loads(out.read_text())
    assert list(document["summary"]) == ["psnr", "gan", "bicubic", "lanczos"]
    assert document["settings"]["model"] == {"psnr": str(toy_model), "gan": str(toy_model)}
    assert document["images"][0]["psnr"] == document["images"][0]["gan"]  # the same file twice
    assert Image.open(tmp_path / "q.png").size[0] == 9 * 192  # HR, 4 methods, 4 error maps


@pytest.mark.parametrize("labels, message", [(["one"], "give 2 distinct names"),
                                             (["a", "bicubic"], "name the baselines")])
def test_labels_that_do_not_fit_the_models_are_one_line(toy_model, tmp_path, capsys, labels, message):
    write_png(tmp_path / "0.png", smooth_image(64, 72, seed=0))
    assert cxr_sr(["bench", "quality", "--model", str(toy_model), str(toy_model), "--label", *labels,
                   "-i", str(tmp_path / "0.png"), "--crop-px", "0"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and message in errors[0]


def test_throughput_document_has_every_method_and_ratios(toy_model, tmp_path):
    """Structure only (timings are not tested): each method at each batch, best batch, ratios."""
    out = tmp_path / "throughput.json"
    assert cxr_sr(["bench", "throughput", "--model", str(toy_model), "--lr-px", "16", "--batch-sizes", "1,2",
                   "--warmup", "1", "--repeats", "2", "--device", "cpu",
                   "--methods", "torchscript,bicubic_torch,bicubic_pil", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert {(r["method"], r["batch"]) for r in document["results"]} == {
        (m, b) for m in ("torchscript", "bicubic_torch", "bicubic_pil") for b in (1, 2)}
    assert all(r["images_per_s"] > 0 for r in document["results"])
    assert set(document["ratios_model_over_bicubic_images_per_s"]) == {"torchscript/bicubic_torch",
                                                                       "torchscript/bicubic_pil"}
