"""Helpers for the export/upscale/C++ tests: a tiny trained-looking generator and a run folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dist_train.config import config_to_plain, load_config
from dist_train.models import SRResNet, build_generator

TINY_CONFIG = Path(__file__).resolve().parents[1] / "dist_train" / "configs" / "tiny_cpu.yaml"


def tiny_generator(scale: int = 4, seed: int = 0, features: int = 8, blocks: int = 2) -> SRResNet:
    """A small SRResNet whose last layer is randomised, so its output is not plain bicubic.

    A freshly built generator's tail is zero (it starts as exact bicubic), which would make
    parity, tiling and C++ comparisons pass trivially.
    """
    torch.manual_seed(seed)
    generator = SRResNet(scale=scale, features=features, blocks=blocks)
    torch.nn.init.normal_(generator.tail.weight, std=0.02)
    return generator.eval()


def write_fake_run(run_dir: Path, scale: int = 4, step: int = 80, arch: str = "srresnet") -> torch.nn.Module:
    """A run folder holding one complete checkpoint in the trainer's format (tiny CPU config).

    Training even the tiny config takes about a minute on CI, so the checkpoint is written
    directly; `dist_train.checkpoint.load_generator` is what reads it back.
    """
    config = load_config(TINY_CONFIG, [f"model.scale={scale}", f"model.arch={arch}"])
    torch.manual_seed(step)
    generator = build_generator(config.model)
    torch.nn.init.normal_(generator.tail.weight, std=0.02)
    weights = generator.state_dict()
    folder = run_dir / "checkpoints" / f"step_{step:08d}"
    folder.mkdir(parents=True)
    torch.save({"step": step, "config": config_to_plain(config),
                "ema": {"module": weights, "updates": step, "decay": 0.999},
                "generator": weights, "bad_steps": {}, "metrics": {"psnr_db": 30.0}},
               folder / "trainer.pt")
    return generator.eval()


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A float image in [0, 1] with structure at several scales (more chest-like than noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = 0.5 + 0.3 * np.sin(7 * x + 3 * y) * np.cos(5 * y) + 0.05 * rng.standard_normal((height, width))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def write_png(path: Path, unit: np.ndarray, bit_depth: int = 8) -> Path:
    """Writes [0, 1] floats as an 8- or 16-bit gray PNG."""
    dtype, peak = (np.uint8, 255) if bit_depth == 8 else (np.uint16, 65535)
    Image.fromarray(np.rint(unit * peak).astype(dtype)).save(path)
    return path


class ToyGenerator(torch.nn.Module):
    """Bicubic plus a small 3x3-conv residual: the cheapest model with the generator's interface.

    Upscale tests care about files, tiling and DICOM, not about the network; a full SRResNet at
    4096 x 4096 output costs ~20 s per image on a 2-core CPU, this one well under a second.
    """

    def __init__(self, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():  # a zero-sum kernel: detail only, no change of mean brightness
            torch.nn.init.normal_(self.conv.weight, std=0.05)
            self.conv.weight -= self.conv.weight.mean()
            torch.nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = torch.nn.functional.interpolate(x, scale_factor=float(self.scale), mode="bicubic",
                                             align_corners=False)
        return up + torch.nn.functional.interpolate(self.conv(x), scale_factor=float(self.scale),
                                                    mode="nearest")


def export_model(path: Path, generator: torch.nn.Module, scale: int = 4) -> Path:
    """TorchScript file of `generator` through the real export path."""
    from export.meta import build_meta
    from export.torchscript import export_torchscript

    export_torchscript(generator.eval(), build_meta(scale), path)
    return path


def exported_fake_run(folder: Path, *export_args: str, arch: str = "srresnet") -> Path:
    """``cxr-sr export`` of a fresh ``write_fake_run`` under ``folder``; returns ``folder/model.pt``."""
    from launch.cli import main as cxr_sr

    write_fake_run(folder / "run", arch=arch)
    assert cxr_sr(["export", "--run", str(folder / "run"), "--out", str(folder / "model.pt"), *export_args]) == 0
    return folder / "model.pt"
