"""`cxr-sr bench discriminator`: can D tell real radiograph patches from their bicubic reconstructions?

D alone is trained with the GAN step's own update (``dist_train.gan_step.discriminator_step``,
the config's loss, learning rate and D) on random HR patches as real and the clamped bicubic 4x
reconstructions of their LR (``dist_train.degradation``) as fake: the easiest fake there is, so
a D that cannot separate these gives the generator nothing but noise. Its accuracy
(``discriminator_accuracy``, as logged in training: 0.5 is chance) is then measured on fresh
batches cut from patients it never trained on.

    cxr-sr bench discriminator -i ../shared/nih-sample --config tiny_cpu --patch-px 192 --steps 300
    cxr-sr bench discriminator -i DIR model.d_spectral_norm=false model.d_high_pass=false ...
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

FRESH_FRACTION = 0.2  # share of patients held out for the fresh batches


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--images", type=Path, nargs="+", required=True, help="HR PNG/DICOM files or folders")
    parser.add_argument("--config", default="tiny_cpu", help="training config whose D, loss and optimizer are used")
    parser.add_argument("--steps", type=int, default=300, help="D updates (Adam steps)")
    parser.add_argument("--patch-px", type=int, default=0, help="HR patch side (0 = the config's data.patch_px)")
    parser.add_argument("--batch", type=int, default=8, help="real patches per step (as many fakes)")
    parser.add_argument("--eval-batches", type=int, default=16, help="fresh batches the accuracy is averaged over")
    parser.add_argument("--limit", type=int, default=0, help="use the first N images (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides (model.d_* ...)")


def split_by_patient(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, fresh): the last FRESH_FRACTION of patients (NIH names: PATIENT_FOLLOWUP.png) are fresh."""
    patients = sorted({p.stem.split("_")[0] for p in paths})
    fresh = set(patients[len(patients) - max(1, round(len(patients) * FRESH_FRACTION)):])
    train = [p for p in paths if p.stem.split("_")[0] not in fresh]
    return train, [p for p in paths if p.stem.split("_")[0] in fresh]


class PatchPairs:
    """Random HR patches of decoded images and their bicubic reconstructions (the fakes)."""

    def __init__(self, paths: list[Path], patch_px: int, scale: int, seed: int):
        import torch

        from data_prep.image_io import read_gray8

        self.images = [torch.from_numpy(read_gray8(p)[0].copy()) for p in paths]
        self.images = [image for image in self.images if min(image.shape) >= patch_px]
        if not self.images:
            raise ValueError(f"no image of at least {patch_px} px among {len(paths)}")
        self.patch_px, self.scale = patch_px, scale
        self.generator = torch.Generator().manual_seed(seed)

    def batch(self, size: int):
        """``(hr, fake)``: ``size x 1 x P x P`` float batches in [0, 1]."""
        import torch

        from dist_train.degradation import bicubic_upsample, downsample

        patches = []
        for _ in range(size):
            image = self.images[int(torch.randint(len(self.images), (1,), generator=self.generator))]
            top, left = (int(torch.randint(n - self.patch_px + 1, (1,), generator=self.generator))
                         for n in image.shape)
            patches.append(image[top:top + self.patch_px, left:left + self.patch_px])
        hr = torch.stack(patches)[:, None].float() / 255.0
        return hr, bicubic_upsample(downsample(hr, self.scale), self.scale).clamp(0.0, 1.0)


def measure(paths: list[Path], config: str = "tiny_cpu", overrides: tuple[str, ...] = (), steps: int = 300,
            patch_px: int = 0, batch: int = 8, eval_batches: int = 16, seed: int = 0) -> dict[str, Any]:
    """Train D alone for ``steps`` and return its fresh-batch accuracy, with the settings used."""
    import torch

    from dist_train import distributed
    from dist_train.backends.ddp_backend import DDPBackend
    from dist_train.config import load_config
    from dist_train.distributed import DistEnv
    from dist_train.gan_step import StepOutcome, discriminator_accuracy, discriminator_step, real_fake_logits
    from dist_train.models import build_discriminator, build_generator
    from dist_train.precision import Precision

    # the D schedule spans exactly these updates; nothing is written
    cfg = load_config(config, [*overrides, "train.pretrain_steps=0", f"train.gan_steps={steps}", "train.device=cpu",
                               "train.precision=fp32", "dist.backend=ddp"])
    patch_px = patch_px or cfg.data.patch_px
    train_paths, fresh_paths = split_by_patient(paths)
    train_pairs = PatchPairs(train_paths, patch_px, cfg.model.scale, seed)
    fresh_pairs = PatchPairs(fresh_paths, patch_px, cfg.model.scale, seed + 1)
    cpu = torch.device("cpu")
    distributed.seed_everything(seed, rank=0)
    backend = DDPBackend(cfg, DistEnv(0, 0, 1, cpu), Precision("fp32", cpu))
    backend.wrap(build_generator(cfg.model), build_discriminator(cfg.model))
    losses, train_accuracy = [], []
    start = time.perf_counter()
    for _ in range(steps):
        hr, fake = train_pairs.batch(batch)
        outcome = StepOutcome()
        discriminator_step(backend, cfg.loss.adversarial, fake, hr, outcome)
        losses.append(outcome.losses["d_loss"])
        train_accuracy.append(outcome.losses["d_accuracy"])
    step_s = (time.perf_counter() - start) / max(steps, 1)
    accuracies = []
    with torch.no_grad():
        for _ in range(eval_batches):
            hr, fake = fresh_pairs.batch(batch)
            accuracies.append(float(discriminator_accuracy(*real_fake_logits(backend.module("d"), hr, fake))))
    tail = max(1, steps // 10)
    return {"fresh_accuracy": sum(accuracies) / len(accuracies), "fresh_batches": eval_batches,
            "last_train_accuracy": sum(train_accuracy[-tail:]) / tail if steps else None,
            "last_train_loss": sum(losses[-tail:]) / tail if steps else None,
            "steps": steps, "batch": batch, "patch_px": patch_px, "step_s": step_s,
            "train_images": len(train_pairs.images), "fresh_images": len(fresh_pairs.images),
            "config": config, "overrides": list(overrides), "adversarial": cfg.loss.adversarial,
            "lr_d": cfg.optim.lr_d, "d": {k: v for k, v in vars(cfg.model).items() if k.startswith("d_")}}


def run(args: argparse.Namespace) -> int:
    from benchmarks.bench_report import emit, header, markdown_table
    from export.inputs import collect_inputs

    paths = collect_inputs(args.images)
    paths = paths[: args.limit] if args.limit else paths
    if len(paths) < 2:
        print("error: need at least two images (train and fresh patients) in " + " ".join(map(str, args.images)))
        return 1
    result = measure(paths, args.config, tuple(args.overrides), args.steps, args.patch_px, args.batch,
                     args.eval_batches, args.seed)
    table = markdown_table(
        ["D (overrides)", "patch px", "steps", "fresh accuracy", "train accuracy (last 10%)", "train loss", "s/step"],
        [[" ".join(args.overrides) or "config defaults", result["patch_px"], result["steps"],
          result["fresh_accuracy"], result["last_train_accuracy"], result["last_train_loss"], result["step_s"]]])
    emit({"header": header(), "result": result}, table, args.json, args.markdown)
    return 0
