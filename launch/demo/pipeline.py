"""The demo's steps, in order: data, shards, training, export, benchmarks, figures, report.

Each step calls the project's own command (`python -m launch <command>`, exactly what a user
would type after `cxr-sr`) or its library functions; nothing here re-implements a stage.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from data_prep.manifest import MANIFEST_NAME
from launch.demo.settings import DemoSettings
from launch.demo.steps import Step, StepContext

MODEL_NAME = "cxr_sr_x4.pt"
RADIOGRAPH_NAME = "RG1_UNCR.dcm"  # a real Philips CR PA chest, MONOCHROME1, 15-bit, from pydicom-data
# real NIH radiographs beside the project (../shared/realxray), used when present
SHARED_REALXRAY = Path(__file__).resolve().parents[3] / "shared" / "realxray"
# LR tile of `bench quality` (its default); the figures upscale with the same, so they show the SR it measured
QUALITY_TILE_PX = 256


@dataclass(frozen=True)
class DemoPaths:
    """Where every step reads and writes, under the demo's output folder."""

    out: Path

    @property
    def synth(self) -> Path:
        return self.out / "synth"

    @property
    def shards(self) -> Path:
        return self.out / "shards"

    @property
    def holdback(self) -> Path:
        return self.out / "holdback"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def model(self) -> Path:
        return self.out / "model" / MODEL_NAME

    @property
    def bench(self) -> Path:
        return self.out / "bench"

    @property
    def figures(self) -> Path:
        return self.out / "figures"

    @property
    def report(self) -> Path:
        return self.out / "report.md"


def radiograph_path() -> Path:
    """RG1_UNCR.dcm from the pydicom-data package (found offline through pydicom's data manager)."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError as exc:
        raise FileNotFoundError("pydicom is not installed") from exc
    path = get_testdata_file(RADIOGRAPH_NAME)
    if path is None:
        raise FileNotFoundError(f"{RADIOGRAPH_NAME} not found: install the pydicom-data package "
                                "(pip install pydicom-data; part of cxr-sr[dev])")
    return Path(path)


def cxr_sr(*args: str) -> list[str]:
    """The argv of `cxr-sr ARGS` run by the interpreter running the demo."""
    return [sys.executable, "-m", "launch", *args]


def build_steps(settings: DemoSettings, paths: DemoPaths) -> list[Step]:
    """The ordered list of steps for these settings."""
    return DemoPipeline(settings, paths).steps()


class DemoPipeline:
    """The demo's steps as methods sharing the settings and paths; ``steps()`` lists them in order."""

    def __init__(self, settings: DemoSettings, paths: DemoPaths):
        self.s, self.p = settings, paths

    def steps(self) -> list[Step]:
        s, p = self.s, self.p
        return [
            Step("data", "synthetic chest phantoms (prep synth)" if not s.images else "your images", self.data),
            Step("shard", "patient-disjoint WebDataset shards with DALI indexes (prep shard)", self.shard),
            Step("verify", "re-check the shards against their manifest (prep verify)", self.verify),
            Step("holdback", "take the test split out of the shards for the benchmarks", self.holdback),
            Step("train", f"SRGAN, {s.nproc} processes via the launcher (PSNR phase, then GAN phase)", self.train),
            Step("export", "TorchScript generator with parity check (export)", self.export),
            Step("cpp", "run the model once through the C++ example, if built", self.cpp),
            Step("quality-holdback", "PSNR/SSIM/consistency vs bicubic on held-back images (bench quality)",
                 lambda ctx: self.quality(ctx, "holdback")),
            Step("quality-radiograph", f"the same on a real radiograph, {RADIOGRAPH_NAME} via pydicom (bench quality)",
                 lambda ctx: self.quality(ctx, "radiograph")),
            Step("quality-default", "the shipped default model on the real images, beside the demo's model "
                 "(bench quality)", self.quality_default),
            Step("throughput", f"images/s of the model vs bicubic, {s.throughput_lr_px} px in (bench throughput)",
                 self.throughput),
            Step("figures", "crops, error maps, loss curves, throughput and consistency figures", self.figures),
            Step("report", f"summary table and {p.report.name}", self.report),
        ]

    def data(self, ctx: StepContext) -> None:
        s, p = self.s, self.p
        if s.images:
            ctx.say(f"using your images in {s.images} (no synthesis)")
            ctx.results["source"] = s.images
            return
        ctx.say(f"{s.n_images} synthetic chest phantoms of {s.size_px} px -> {p.synth}")
        ctx.run(cxr_sr("prep", "synth", "--out", str(p.synth), "-n", str(s.n_images), "--size", str(s.size_px)),
                echo=r"synthetic")
        ctx.results["source"] = str(p.synth)

    def shard(self, ctx: StepContext) -> None:
        # val 0.2: small folders (--images) still give every training process a validation image
        ctx.run(cxr_sr("prep", "shard", "--source", self.s.images or str(self.p.synth), "--out", str(self.p.shards),
                       "--quiet", "--workers", "2", "--samples-per-shard", "200", "--val-fraction", "0.2"),
                echo=r"images /")
        counts = json.loads((self.p.shards / MANIFEST_NAME).read_text())["counts"]
        # dist_train's DALI validation reader fails when the val split has fewer images than ranks
        if counts["val"] < self.s.nproc or counts["test"] < 1 or counts["train"] < 1:
            raise ValueError(f"the shards have {counts['train']} train, {counts['val']} val and {counts['test']} "
                             f"test images; the demo needs at least 1, {self.s.nproc} (one per training process) "
                             "and 1: give a folder with more patients")

    def verify(self, ctx: StepContext) -> None:
        ctx.run(cxr_sr("prep", "verify", str(self.p.shards)), echo=r"ok;|problem")

    def holdback(self, ctx: StepContext) -> None:
        from launch.demo.holdback import extract_test_split

        written = extract_test_split(self.p.shards, self.p.holdback, self.s.holdback_max)
        ctx.say(f"{len(written)} test-split images (patients never trained on) -> {self.p.holdback}")
        ctx.results["images"] = [str(w) for w in written]

    def train(self, ctx: StepContext) -> None:
        s, p = self.s, self.p
        ctx.say(f"{s.nproc} processes (torchrun, DDP over gloo), DALI CPU loader; "
                f"{s.pretrain_steps} PSNR steps then {s.gan_steps} GAN steps; tensorboard in {p.run / 'tensorboard'}")
        # --resume: an interrupted demo continues from the newest complete checkpoint
        ctx.run(cxr_sr("launch", "--launcher", "torchrun", "--nproc", str(s.nproc), "--config", "tiny_cpu",
                       "--resume", "data.backend=dali", f"data.shards={p.shards}", f"train.out_dir={p.run}",
                       f"data.patch_px={s.patch_px}", f"data.batch_size={s.batch_size}",
                       f"data.val_crop_px={s.val_crop_px}", f"train.pretrain_steps={s.pretrain_steps}",
                       f"train.gan_steps={s.gan_steps}", f"train.val_every={s.val_every}",
                       f"train.ckpt_every={s.val_every}", f"train.log_every={max(1, min(10, s.val_every))}",
                       f"train.ema_decay={s.ema_decay}"),
                echo=r"^step \d+/\d+|val: PSNR|resumed from|^done:")

    def export(self, ctx: StepContext) -> None:
        p = self.p
        p.model.parent.mkdir(parents=True, exist_ok=True)
        ctx.run(cxr_sr("export", "--run", str(p.run), "--out", str(p.model), "--parity-images", str(p.holdback)),
                echo=r"torchscript")

    def cpp(self, ctx: StepContext) -> None:
        from launch.demo.cpp import BUILD_HINT, find_binary

        binary = find_binary()
        if binary is None:
            ctx.say(f"C++ example not built: skipped (build it with `{BUILD_HINT}`, then re-run the demo)")
            ctx.results["skipped"] = f"not built ({BUILD_HINT})"
            return
        ctx.results.update(_run_cpp_once(binary, self.p))
        ctx.say(f"{binary} upscaled {ctx.results['size']} px; max difference to Python "
                f"{ctx.results['max_abs_diff_levels']} gray levels")

    def quality(self, ctx: StepContext, dataset: str) -> None:
        s, p = self.s, self.p
        images, crop = ((str(p.holdback), s.holdback_crop_px) if dataset == "holdback"
                        else (str(radiograph_path()), s.dicom_crop_px))
        stem = p.bench / f"quality_{dataset}"
        ctx.run(cxr_sr("bench", "quality", "--model", str(p.model), "-i", images, "--crop-px", str(crop),
                       "--tile", str(QUALITY_TILE_PX),
                       "--json", f"{stem}.json", "--markdown", f"{stem}.md", "--figure", f"{stem}.png"),
                echo=r"^\| (model|bicubic|lanczos) ")
        ctx.results["json"] = f"{stem}.json"

    def quality_default(self, ctx: StepContext) -> None:
        """The packaged model (what `upscale` uses without --model) on RG1_UNCR.dcm, and on
        ../shared/realxray when present with the demo's model beside it."""
        from export.default_model import default_model_path

        s, p = self.s, self.p
        runs = [(default_model_path(), "default_radiograph", str(radiograph_path()), s.dicom_crop_px)]
        if SHARED_REALXRAY.is_dir():
            # centre crops as for the DICOM: whole 1024-1955 px images take minutes on a CPU
            runs += [(default_model_path(), "default_realxray", str(SHARED_REALXRAY), s.dicom_crop_px),
                     (p.model, "realxray", str(SHARED_REALXRAY), s.dicom_crop_px)]
        for model, name, images, crop in runs:
            ctx.run(cxr_sr("bench", "quality", "--model", str(model), "-i", images, "--crop-px", str(crop),
                           "--tile", str(QUALITY_TILE_PX), "--json", str(p.bench / f"quality_{name}.json")),
                    echo=r"^\| (model|bicubic) ")
        ctx.results["json"] = [str(p.bench / f"quality_{name}.json") for _, name, _, _ in runs]

    def throughput(self, ctx: StepContext) -> None:
        s, p = self.s, self.p
        ctx.run(cxr_sr("bench", "throughput", "--model", str(p.model), "--device", "cpu",
                       "--methods", "torchscript,eager,bicubic_torch,bicubic_pil", "--batch-sizes", "1",
                       "--lr-px", str(s.throughput_lr_px), "--warmup", "2", "--repeats", str(s.throughput_repeats),
                       "--json", str(p.bench / "throughput.json"), "--markdown", str(p.bench / "throughput.md")),
                echo=r"^\| (torchscript|eager|bicubic_torch|bicubic_pil)")

    def figures(self, ctx: StepContext) -> None:
        from launch.demo.report import write_figures

        written = write_figures(self.s, self.p, radiograph_path())
        ctx.results["figures"] = {name: str(path) for name, path in written.items()}
        ctx.say(f"{len(written)} figures -> {self.p.figures}")

    def report(self, ctx: StepContext) -> None:
        from launch.demo.report import write_report

        ctx.results["report"] = str(write_report(self.s, self.p))


def _run_cpp_once(binary: Path, paths: DemoPaths) -> dict:
    """The first held-back image, downsampled, through the C++ binary and through Python."""
    import numpy as np
    import torch
    from PIL import Image

    from dist_train.degradation import downsample
    from export.image_io import read_image
    from export.model_file import load_exported
    from launch.demo.cpp import run_cpp_example

    first = sorted(paths.holdback.glob("*.png"))[0]
    model = load_exported(paths.model)
    hr = torch.from_numpy(read_image(first).to_unit())
    height, width = (n // model.scale * model.scale for n in hr.shape)
    lr = downsample(hr[:height, :width][None, None], model.scale)
    lr_levels = np.rint(lr[0, 0].numpy() * 255).astype(np.uint8)  # what the PNG holds, for both sides
    folder = paths.out / "cpp"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(lr_levels).save(folder / "lr.png")
    python_sr = model(torch.from_numpy(lr_levels.astype(np.float32) / 255)[None, None])[0, 0].numpy()
    return run_cpp_example(binary, paths.model, folder / "lr.png", python_sr, folder / "sr_cpp.png")
