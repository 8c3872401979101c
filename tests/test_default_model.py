"""The shipped default model (export/models/cxr_sr_x4.pt): what a fresh install upscales with.

Why: it is the one model every user meets first, so it must load with torch alone, be what its
card says (the card is rendered from the file's own meta.json), really beat bicubic on real
radiographs of patients it never saw, and be picked up by `cxr-sr upscale` without --model.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dist_train.degradation import bicubic_upsample, downsample
from dist_train.metrics import psnr_per_image
from dist_train.models.cost import gmac_per_input
from export.default_model import DEFAULT_MODEL, MODEL_CARD
from export.model_card import render_card
from export.torchscript import load_torchscript
from launch.cli import main as cxr_sr

# The gain over bicubic on ../shared/realxray's NIH PNGs: measured +1.81 dB (the model card's
# table); the floor is the +1.5 dB the model was made to reach, which leaves 0.3 dB for another
# CPU's kernels while still failing for a model that has not learnt (untrained = bicubic: 0 dB).
MIN_REAL_GAIN_DB = 1.5
MAX_GMAC = 10.0
SHIPPED_MAX_BYTES = 5 * 2**20


def _nih_pngs(realxray_dir):
    return sorted(realxray_dir.glob("*.png"))


def test_shipped_file_loads_with_torch_alone_and_keeps_the_contract():
    """torch.jit.load with no project code: 4x, one channel, [0, 1], meta.json present."""
    assert DEFAULT_MODEL.stat().st_size <= SHIPPED_MAX_BYTES
    extra = {"meta.json": ""}
    module = torch.jit.load(str(DEFAULT_MODEL), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["meta.json"])
    out = module(torch.rand(2, 1, 24, 20))
    assert out.shape == (2, 1, 96, 80) and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert meta["scale"] == 4 and meta["model_config"]["arch"] == "compact" and meta["weights"] == "ema"


def test_card_is_rendered_from_the_files_own_meta_and_its_cost_is_true():
    """MODEL_CARD.md must be exactly what the file's meta.json renders to, and the GMAC it states
    must be what the network costs now."""
    module, meta = load_torchscript(DEFAULT_MODEL)
    assert MODEL_CARD.read_text() == render_card(meta)
    card = meta["card"]
    assert card["steps"] == meta["training_step"] and card["data"]["train_images"] + card["data"]["val_images"] == 312
    from dist_train.config import ModelConfig
    from dist_train.models import build_generator

    generator = build_generator(ModelConfig(**meta["model_config"]))
    generator.load_state_dict(module.generator.state_dict())
    assert gmac_per_input(generator) == pytest.approx(meta["cost"]["gmac"], abs=1e-3)
    assert meta["cost"]["gmac"] <= MAX_GMAC
    last = card["validation_curve"][-1]
    assert last["psnr_db"] > last["bicubic_psnr_db"]  # the card's own validation says it learnt


def test_beats_bicubic_on_real_radiographs_of_other_patients(realxray_dir):
    """docs/contracts.md §5 on the 10 NIH PNGs of ../shared/realxray (none of the training
    sample's patients): mean PSNR gain over bicubic of at least MIN_REAL_GAIN_DB."""
    from export.image_io import read_image

    module, _ = load_torchscript(DEFAULT_MODEL)
    gains = []
    for path in _nih_pngs(realxray_dir):
        hr = torch.from_numpy(read_image(path).to_unit())[None, None].float()
        lr = downsample(hr, 4)
        with torch.inference_mode():
            sr = module(lr)
        bicubic = bicubic_upsample(lr, 4).clamp(0, 1)
        gains.append(float(psnr_per_image(sr, hr, crop=4)[0] - psnr_per_image(bicubic, hr, crop=4)[0]))
    assert len(gains) == 10
    assert np.mean(gains) >= MIN_REAL_GAIN_DB, f"gains per image: {np.round(gains, 2)}"


def test_upscale_without_model_uses_the_shipped_one_and_beats_bicubic(realxray_dir, tmp_path, capsys):
    """The fresh-clone promise: `cxr-sr upscale -i some.png -o out/` with no --model writes an
    image closer to the original than bicubic, and says which model it used."""
    original = np.asarray(Image.open(_nih_pngs(realxray_dir)[0]).convert("L"), dtype=np.float32) / 255
    lr = downsample(torch.from_numpy(original)[None, None], 4)
    lr_png = tmp_path / "lr.png"
    Image.fromarray(np.rint(lr[0, 0].numpy() * 255).astype(np.uint8)).save(lr_png)
    assert cxr_sr(["upscale", "-i", str(lr_png), "-o", str(tmp_path / "out")]) == 0
    assert "shipped default model" in capsys.readouterr().err
    written = sorted((tmp_path / "out").glob("*.png"))
    assert len(written) == 1
    sr = torch.from_numpy(np.asarray(Image.open(written[0]), dtype=np.float32) / 255)[None, None]
    bicubic = bicubic_upsample(lr, 4).clamp(0, 1)
    hr = torch.from_numpy(original)[None, None]
    assert float(psnr_per_image(sr, hr, crop=4)[0]) > float(psnr_per_image(bicubic, hr, crop=4)[0]) + 0.3


def test_a_non_editable_install_carries_the_model_and_its_card(tmp_path):
    """`pip install cxr-sr` (a wheel, not this checkout) must still find the default model."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(root)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("cxr_sr-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"export/models/cxr_sr_x4.pt", "export/models/MODEL_CARD.md", "export/default_model.py"} <= names
