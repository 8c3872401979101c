"""What the demo does: dataset size, training length and benchmark sizes, full or quick."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class DemoSettings:
    """Every number the demo's steps use; the defaults are the README's full run (< 10 min, 2 cores)."""

    images: str = ""  # a folder of real images to shard instead of `prep synth` ("" = synthesise)
    n_images: int = 40  # synthetic radiographs
    size_px: int = 1024  # their side: LR 256 -> HR 1024, the system's contract
    nproc: int = 2  # training processes (torchrun, DDP over gloo)
    pretrain_steps: int = 480  # PSNR phase
    gan_steps: int = 120  # GAN phase
    patch_px: int = 64
    batch_size: int = 8  # per process
    val_every: int = 80
    val_crop_px: int = 256
    ema_decay: float = 0.99  # short run: 0.999 would leave the EMA at the untrained (bicubic) weights
    holdback_max: int = 6  # test-split images benchmarked
    # Centre crops for the quality benchmark: the model's forward pass dominates its time, and 512 px
    # keeps the demo's quality step to seconds.
    holdback_crop_px: int = 512
    dicom_crop_px: int = 512
    throughput_lr_px: int = 256
    throughput_repeats: int = 5
    crop_px: int = 160  # HR px of the crops shown in the figures

    def __post_init__(self) -> None:
        if self.n_images < 8:
            raise ValueError(f"--n-images {self.n_images}: give at least 8 so that train, val and test all get a patient")
        if self.size_px < 128 or self.size_px % 4:
            raise ValueError(f"--size {self.size_px}: give a multiple of 4, at least 128 px")
        if self.nproc < 1:
            raise ValueError(f"--nproc {self.nproc}: give at least 1 process")
        if self.pretrain_steps < 1 or self.gan_steps < 1:
            raise ValueError("--pretrain-steps and --gan-steps must both be >= 1 (the demo shows both phases)")

    @classmethod
    def quick(cls, **overrides) -> "DemoSettings":
        """A reduced run for tests and a first look: small images, a few steps (~1-2 min)."""
        small = cls(n_images=12, size_px=256, pretrain_steps=12, gan_steps=6, patch_px=32, batch_size=4,
                    val_every=6, val_crop_px=128, holdback_max=2, holdback_crop_px=256, dicom_crop_px=256,
                    throughput_lr_px=64, throughput_repeats=2, crop_px=96)
        return replace(small, **overrides)

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.gan_steps

    def digest(self) -> str:
        """Changes whenever a setting does: completed steps are reused only under the same digest."""
        plain = asdict(self) | {"images": str(Path(self.images).resolve()) if self.images else ""}
        return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]
