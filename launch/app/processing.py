"""What the app computes, without Streamlit: decode an upload, restore it, measure, encode results.

Kept apart from the page so that it can be tested directly and so that every failure a user can
cause becomes an ``UploadError`` with a sentence for the page, never a traceback.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from data_prep.image_io import ImageDecodeError
from dist_train.degradation import bicubic_upsample, crop_to_scale, downsample
from dist_train.metrics import consistency_psnr, psnr_per_image, ssim_per_image
from export.image_io import ImageTooLargeError, SourceImage, read_image
from export.model_file import ExportedModel
from export.tiling import upscale_image

MAX_UPLOAD_BYTES = 100 * 2**20  # also Streamlit's server.maxUploadSize (see launch.app_command)
MAX_HR_PIXELS = 40_000_000  # an upload treated as HR: 40 MP (a 6000 x 6600 film)
MAX_LR_PIXELS = 2_000_000  # an upload upscaled as it is: 2 MP in, 32 MP out
TILE_PX = 256

HR_MODE = "hr"  # the upload is a high-resolution original: downsample, restore, compare
LR_MODE = "lr"  # the upload is the low-resolution input: restore it as it is


class UploadError(ValueError):
    """A problem with what the user uploaded; ``str()`` is a sentence for the page."""


@dataclass
class Comparison:
    """One upload through the model: [0, 1] float arrays; HR only when there is a reference."""

    source: SourceImage
    lr: np.ndarray
    bicubic: np.ndarray
    sr: np.ndarray
    hr: np.ndarray | None
    scale: int
    mode: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> figure -> value


def decode_upload(name: str, data: bytes, max_pixels: int) -> SourceImage:
    """The uploaded bytes as a SourceImage, or UploadError saying what is wrong with them."""
    if not data:
        raise UploadError(f"'{name}' is empty (0 bytes): upload a PNG or DICOM chest X-ray.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"'{name}' is {len(data) / 2**20:.0f} MB; this demo takes files up to "
                          f"{MAX_UPLOAD_BYTES // 2**20} MB.")
    try:
        return read_image(data, max_pixels=max_pixels, name=name)
    except ImageTooLargeError as exc:  # raised from the header, before any pixel is decoded
        raise UploadError(f"'{name}' is {exc.width} x {exc.height} px ({exc.width * exc.height / 1e6:.0f} megapixels), "
                          f"too large for this demo (at most {max_pixels / 1e6:.0f} megapixels here). "
                          "Crop or downsample it first.") from None
    except ImageDecodeError as exc:
        raise UploadError(f"'{name}' could not be read as an X-ray: {exc.problem}. "
                          "Upload a PNG or DICOM image.") from None


def upscale(model: ExportedModel, lr: np.ndarray) -> np.ndarray:
    """The model's SR of one LR image, tile by tile so that memory stays bounded."""
    return upscale_image(model, lr, model.scale, TILE_PX)


def measure(sr: np.ndarray, bicubic: np.ndarray, lr: np.ndarray, hr: np.ndarray | None,
            scale: int) -> dict[str, dict[str, float]]:
    """PSNR/SSIM against HR (when given) and the consistency figure, for the model and bicubic (§5)."""
    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]

    figures: dict[str, dict[str, float]] = {}
    for method, output in (("model", sr), ("bicubic", bicubic)):
        values = {"consistency_psnr_db": float(consistency_psnr(tensor(output), tensor(lr), scale)[0])}
        if hr is not None:
            values["psnr_db"] = float(psnr_per_image(tensor(output), tensor(hr), scale)[0])
            values["ssim"] = float(ssim_per_image(tensor(output), tensor(hr), scale)[0])
        figures[method] = values
    return figures


def compare(model: ExportedModel, upload: SourceImage, mode: str, reference: SourceImage | None = None) -> Comparison:
    """HR mode: downsample the upload, restore, compare with it. LR mode: restore the upload as it is,
    and compare with ``reference`` when one is given (it must be exactly ``scale`` times larger)."""
    scale = model.scale
    if mode == HR_MODE:
        hr = crop_to_scale(upload.to_unit(), scale)
        if min(hr.shape) < 8 * scale:
            raise UploadError(f"'{upload.path.name}' is {upload.width} x {upload.height} px; treated as the "
                              f"high-resolution original it needs at least {8 * scale} px per side.")
        lr = downsample(torch.from_numpy(np.ascontiguousarray(hr))[None, None], scale)[0, 0].numpy()
    else:
        lr, hr = upload.to_unit(), None
        if reference is not None:
            hr = reference.to_unit()
            if hr.shape != (scale * lr.shape[0], scale * lr.shape[1]):
                raise UploadError(f"the high-resolution original is {hr.shape[1]} x {hr.shape[0]} px; for this "
                                  f"{lr.shape[1]} x {lr.shape[0]} px input it must be exactly "
                                  f"{scale * lr.shape[1]} x {scale * lr.shape[0]} px (x{scale}).")
    bicubic = bicubic_upsample(torch.from_numpy(np.ascontiguousarray(lr))[None, None], scale).clamp(0, 1)[0, 0].numpy()
    sr = upscale(model, lr)
    return Comparison(upload, lr, bicubic, sr, hr, scale, mode, measure(sr, bicubic, lr, hr, scale))


def png_bytes(comparison: Comparison) -> bytes:
    """The SR as a grayscale PNG at the upload's bit depth (and, for DICOM, its value range)."""
    buffer = io.BytesIO()
    Image.fromarray(comparison.source.from_unit(comparison.sr)).save(buffer, format="PNG")
    return buffer.getvalue()


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
