"""`cxr-sr upscale`: PNG/DICOM files and folders in, upscaled files and a per-image report out.

Small images of one size are batched; images larger than a tile go through `tiling` (output in
memory, or streamed to a PNG row by row when larger than ``stream_above_px``). Every file that
fails yields a one-line error naming it and the batch goes on; the caller turns failures into a
non-zero exit code. A full disk stops the run instead: every later image would fail the same way.
Model output is checked (finite, within [0, 1]) before anything is written from it.
"""
from __future__ import annotations

import errno
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_prep.atomic import remove_stale_tmp
from data_prep.image_io import ImageDecodeError
from export.consistency import DEFAULT_ITERATIONS, enforce_consistency
from export.image_io import DEFAULT_MAX_INPUT_PIXELS, SourceImage, read_image, write_png
from export.inputs import output_path, scan_inputs
from export.model_file import ExportedModel, ModelRunError, describe
from export.report import ImageResult
from export.tiling import DEFAULT_OVERLAP_PX, tile_count, upscale_image, upscale_tiled

OUTPUT_FORMATS = ("auto", "png", "dicom")
# errors that concern one file; anything else is a bug and propagates
PER_FILE_ERRORS = (ImageDecodeError, ValueError, OSError, RuntimeError, MemoryError)
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@dataclass
class UpscaleSettings:
    """How `upscale_files` works; validated on creation."""

    tile_px: int = 256  # LR px per tile side; 0 = never tile
    overlap_px: int = DEFAULT_OVERLAP_PX  # LR px of context each side of a tile (also the blend width)
    batch_size: int = 4  # images (or tiles) per forward pass
    output_format: str = "auto"  # auto = DICOM for DICOM input, PNG otherwise
    data_consistency: bool = False
    dc_iterations: int = DEFAULT_ITERATIONS
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    stream_above_px: int = 1 << 28  # output pixels above which the PNG is streamed row by row
    progress: bool = True

    def __post_init__(self) -> None:
        if self.tile_px and self.tile_px < max(self.overlap_px, 8):
            raise ValueError(f"--tile {self.tile_px} must be 0 or at least max(--overlap, 8) px")
        if self.overlap_px < 0 or self.overlap_px % 2:
            raise ValueError(f"--overlap {self.overlap_px} must be a non-negative even number of px")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size} must be at least 1")
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"--output-format must be one of {OUTPUT_FORMATS}")


QUANTISE_ROWS = 256  # rows converted to integers at a time: bounds the float temporaries


def _write_quantised(writer, image: SourceImage, rows: np.ndarray) -> None:
    """Streams float rows to the PNG in small blocks, so quantising never copies a whole band."""
    for start in range(0, rows.shape[0], QUANTISE_ROWS):
        writer.write_rows(image.display_levels(rows[start:start + QUANTISE_ROWS]))


@dataclass
class _Job:
    image: SourceImage
    result: ImageResult
    out: Path
    started: float


class Upscaler:
    """Runs one model over many files according to `UpscaleSettings`."""

    def __init__(self, model: ExportedModel, out_dir: Path, settings: UpscaleSettings,
                 log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)):
        self.model, self.out_dir, self.settings, self.log = model, Path(out_dir), settings, log
        self.scale = model.scale
        self._taken: set[Path] = set()
        self._pending: list[_Job] = []
        self.results: list[ImageResult] = []
        self.disk_full: OSError | None = None  # set when writing hit a full disk; the run stops

    # ---- entry point ----
    def run(self, inputs: list[Path]) -> list[ImageResult]:
        from tqdm import tqdm

        self.out_dir.mkdir(parents=True, exist_ok=True)
        stale = remove_stale_tmp(self.out_dir)
        if stale:
            self.log(f"removed {len(stale)} temporary file(s) an interrupted run left in {self.out_dir}")
        scan = scan_inputs(inputs)
        self._report_skipped(scan.skipped)
        with tqdm(total=len(scan.files), unit="img", disable=not self.settings.progress, file=sys.stderr) as bar:
            if self.settings.progress:  # errors printed above the bar, not through it
                self.log = lambda line: bar.write(line, file=sys.stderr)
            for path in scan.files:
                if self.disk_full is None:
                    self._submit(path)
                else:
                    self.results.append(self._not_attempted(ImageResult(input=str(path))))
                bar.update(1)
            self._flush()
        return self.results

    @staticmethod
    def _not_attempted(result: ImageResult) -> ImageResult:
        result.status, result.error = "error", f"{result.input}: not attempted: the output disk is full"
        return result

    def _report_skipped(self, skipped: list[tuple[Path, str]], shown: int = 5) -> None:
        """Every skipped file goes into the report; the log names a few and counts the rest."""
        for path, reason in skipped:
            self.results.append(ImageResult(input=str(path), status="skipped", error=reason))
        for path, reason in skipped[:shown]:
            self.log(f"skipped: {path}: {reason}")
        if len(skipped) > shown:
            self.log(f"skipped: {len(skipped) - shown} more file(s) that are not images (listed in the report)")

    def _submit(self, path: Path) -> None:
        result = ImageResult(input=str(path))
        self.results.append(result)
        started = time.perf_counter()
        try:
            image = read_image(path, self.settings.max_input_pixels)
            result.input_size, result.bit_depth = f"{image.width}x{image.height}", image.bit_depth
            result.notes += image.notes
            kind = image.kind if self.settings.output_format == "auto" else self.settings.output_format
            if kind == "dicom" and image.dataset is None:
                raise ValueError("DICOM output needs DICOM input (its patient and study data)")
            out = output_path(path, self.out_dir, kind, self._taken)
        except PER_FILE_ERRORS as exc:
            self._fail(result, exc)
            return
        job = _Job(image, result, out, started)
        tile = self.settings.tile_px
        if tile == 0 or (image.height <= tile and image.width <= tile):
            if self._pending and (self._pending[0].image.stored.shape != image.stored.shape
                                  or len(self._pending) >= self.settings.batch_size):
                self._flush()
            self._pending.append(job)
        else:
            self._flush()
            self._guarded([job], lambda: self._run_tiled(job))

    # ---- whole images, batched ----
    def _flush(self) -> None:
        jobs, self._pending = self._pending, []
        if jobs:
            self._guarded(jobs, lambda: self._run_batch(jobs))

    def _run_batch(self, jobs: list[_Job]) -> None:
        lr = torch.from_numpy(np.stack([j.image.to_unit() for j in jobs])[:, None])
        try:
            sr = self.model(lr).cpu()
        except ModelRunError:
            if len(jobs) == 1:
                raise
            for job in jobs:  # one by one, so only the image that breaks the model fails
                self._guarded([job], lambda job=job: self._run_batch([job]))
            return
        for index, job in enumerate(jobs):
            job.result.tiles = 1
            self._guarded([job], lambda: self._finish(job, sr[index:index + 1], lr[index:index + 1]))

    # ---- large images, tiled ----
    def _run_tiled(self, job: _Job) -> None:
        image, scale, settings = job.image, self.scale, self.settings
        job.result.tiles = tile_count(image.height, image.width, settings.tile_px, settings.overlap_px)
        out_height, out_width = scale * image.height, scale * image.width
        if out_height * out_width <= settings.stream_above_px:
            lr = image.to_unit()
            sr = upscale_image(self.model, lr, scale, settings.tile_px, settings.overlap_px, settings.batch_size)
            self._finish(job, torch.from_numpy(sr)[None, None], torch.from_numpy(lr)[None, None])
            return
        def run_batch(lr: torch.Tensor) -> torch.Tensor:
            sr = self.model(lr)
            self.model.check_output(sr)
            if settings.data_consistency:  # streamed rows are never whole again: consistency per tile
                sr = enforce_consistency(sr, lr, scale, settings.dc_iterations)
            return sr
        tile_args = dict(read_region=image.to_unit, height=image.height, width=image.width, scale=scale,
                         run_batch=run_batch, tile_px=settings.tile_px, overlap_px=settings.overlap_px,
                         batch_size=settings.batch_size)
        if job.out.suffix != ".png":
            raise ValueError(f"output {out_width}x{out_height} px is streamed, which only PNG supports "
                             "(--output-format png)")
        from export.png_stream import PngRowWriter

        writer = PngRowWriter(job.out, out_width, out_height, image.bit_depth)
        try:
            upscale_tiled(emit_rows=lambda rows: _write_quantised(writer, image, rows), **tile_args)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        job.result.notes.append("streamed output: consistency figure not computed")
        if settings.data_consistency:
            job.result.notes.append("data consistency applied per tile")
        self._succeed(job, out_width, out_height)

    # ---- shared ending ----
    def _finish(self, job: _Job, sr: torch.Tensor, lr: torch.Tensor) -> None:
        """Consistency figures, optional data consistency, then the output file."""
        from dist_train.metrics import consistency_psnr

        self.model.check_output(sr)
        job.result.consistency_psnr_db = float(consistency_psnr(sr, lr, self.scale)[0])
        if self.settings.data_consistency:
            sr = enforce_consistency(sr, lr, self.scale, self.settings.dc_iterations)
            job.result.consistency_after_dc_psnr_db = float(consistency_psnr(sr, lr, self.scale)[0])
        is_dicom = job.out.suffix == ".dcm"
        to_levels = job.image.from_unit if is_dicom else job.image.display_levels
        stored = to_levels(sr[0, 0].numpy())
        if is_dicom:
            from export.dicom_out import upscaled_dataset, write_dicom

            note = (f"{self.scale}x super-resolution by {describe(self.model)}"
                    + (", with data consistency (back-projection)" if self.settings.data_consistency else "")
                    + "; detail is synthesised, not acquired")
            write_dicom(job.out, upscaled_dataset(job.image.dataset, stored, self.scale, note))
        else:
            write_png(job.out, stored)
        self._succeed(job, stored.shape[1], stored.shape[0])

    def _succeed(self, job: _Job, width: int, height: int) -> None:
        job.result.output, job.result.output_size = str(job.out), f"{width}x{height}"
        job.result.seconds = round(time.perf_counter() - job.started, 3)
        job.image.stored = np.empty((0, 0), job.image.stored.dtype)  # free the pixels early

    def _guarded(self, jobs: list[_Job], work: Callable[[], None]) -> None:
        if self.disk_full is not None:
            for job in jobs:
                if job.result.status == "ok" and job.result.output is None:
                    self._not_attempted(job.result)
            return
        try:
            work()
        except PER_FILE_ERRORS as exc:
            for job in jobs:
                if job.result.status == "ok" and job.result.output is None:
                    self._fail(job.result, exc)

    def _fail(self, result: ImageResult, exc: BaseException) -> None:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not message.startswith(result.input):
            message = f"{result.input}: {message}"
        result.status, result.error = "error", message
        self.log(f"error: {message}")
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS and self.disk_full is None:
            self.disk_full = exc
            self.log(f"error: {self.out_dir}: the output disk is full ({exc.strerror}); stopping, "
                     "the images not yet written are listed as not attempted")
