"""The app's computing without a browser: upload checks, tiled SSIM, modes, downloads.

Why: the page only shows what launch.app.processing returns, so the numbers it shows must be the
protocol's (docs/contracts.md §5) and every bad upload must become a sentence. The tiled SSIM exists
because the protocol's SSIM needs ~5 GB for a 1024 px image; it must equal the untiled figure.
"""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from export.image_io import SourceImage
from launch.app import processing
from launch.app.dicom_download import dicom_bytes
from launch.app.processing import HR_MODE, LR_MODE, UploadError
from tests.export_helpers import ToyGenerator, smooth_image


class _Model:
    """The ExportedModel interface around a tiny module: (N x 1 x h x w) -> (N x 1 x 4h x 4w)."""

    scale = 4

    def __init__(self):
        self.module = ToyGenerator(4).eval()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(batch.float()).clamp(0, 1)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name, data, expected", [
    ("empty.png", b"", "is empty"),
    ("notes.txt", b"not an image at all\n" * 8, "could not be read as an X-ray"),
    ("truncated.png", _png(np.zeros((64, 64), np.uint8))[:60], "could not be read as an X-ray"),
    ("huge.png", _png(np.zeros((3000, 3000), np.uint8)), "too large for this demo"),
])
def test_bad_uploads_are_sentences(name, data, expected):
    """Each bad upload raises UploadError naming the file, never the temporary path it was read from."""
    with pytest.raises(UploadError) as failure:
        processing.decode_upload(name, data, max_pixels=4_000_000)
    assert expected in str(failure.value) and f"'{name}'" in str(failure.value)
    assert "/tmp" not in str(failure.value)


def test_hr_mode_downsamples_then_compares():
    """HR mode: LR is the upload / 4, SR is the upload's size, PSNR/SSIM/consistency for model and bicubic."""
    upload = processing.decode_upload("x.png", _png(np.rint(smooth_image(130, 98) * 255).astype(np.uint8)), 10**6)
    result = processing.compare(_Model(), upload, HR_MODE)
    assert result.lr.shape == (32, 24) and result.sr.shape == result.hr.shape == (128, 96)
    assert set(result.metrics) == {"model", "bicubic"}
    assert set(result.metrics["model"]) == {"psnr_db", "ssim", "consistency_psnr_db"}


def test_lr_mode_needs_an_exactly_4x_reference():
    """LR mode: consistency only without a reference; a reference of the wrong size is a sentence."""
    model = _Model()
    upload = processing.decode_upload("lr.png", _png(np.rint(smooth_image(40, 30) * 255).astype(np.uint8)), 10**6)
    alone = processing.compare(model, upload, LR_MODE)
    assert alone.hr is None and set(alone.metrics["model"]) == {"consistency_psnr_db"}
    wrong = processing.decode_upload("hr.png", _png(np.zeros((150, 120), np.uint8)), 10**6)
    with pytest.raises(UploadError, match="must be exactly 120 x 160 px"):
        processing.compare(model, upload, LR_MODE, wrong)


def test_large_lr_input_is_tiled_like_a_whole_pass():
    """Above one tile the SR is assembled from tiles; with a local model it matches the whole pass."""
    lr = smooth_image(300, 280).astype(np.float32)
    model = _Model()
    whole = model(torch.from_numpy(lr)[None, None])[0, 0].numpy()
    assert np.abs(processing.upscale(model, lr) - whole).max() < 1e-4


def test_dicom_download_keeps_patient_and_fixes_geometry():
    """A DICOM upload in HR mode: the SR file keeps the patient, has the original grid and spacing."""
    from launch.demo.pipeline import radiograph_path

    try:
        source_ds = pydicom.dcmread(radiograph_path())
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    crop = np.ascontiguousarray(source_ds.pixel_array[700:828, 700:828])
    source_ds.Rows, source_ds.Columns = crop.shape
    source_ds.PixelData = crop.tobytes()
    buffer = io.BytesIO()
    source_ds.save_as(buffer)
    upload = processing.decode_upload("crop.dcm", buffer.getvalue(), 10**6)
    result = processing.compare(_Model(), upload, HR_MODE)
    written = pydicom.dcmread(io.BytesIO(dicom_bytes(result)))
    assert (written.Rows, written.Columns) == (128, 128)
    assert written.PatientID == source_ds.PatientID and written.SOPInstanceUID != source_ds.SOPInstanceUID
    assert written.PhotometricInterpretation == "MONOCHROME1"
    spacing_name = next(k for k in ("PixelSpacing", "ImagerPixelSpacing") if k in source_ds)
    assert [float(v) for v in written.data_element(spacing_name).value] == pytest.approx(
        [float(v) for v in source_ds.data_element(spacing_name).value])


def test_png_upload_gets_a_secondary_capture_dicom():
    """A PNG upload has no DICOM to derive from: the download is a valid Secondary Capture at 8 bits."""
    upload = processing.decode_upload("x.png", _png(np.rint(smooth_image(64, 64) * 255).astype(np.uint8)), 10**6)
    result = processing.compare(_Model(), upload, LR_MODE)
    written = pydicom.dcmread(io.BytesIO(dicom_bytes(result)))
    assert (written.Rows, written.Columns, written.BitsStored) == (256, 256, 8)
    assert np.array_equal(written.pixel_array, np.rint(np.clip(result.sr, 0, 1) * 255).astype(np.uint8))
    png = np.asarray(Image.open(io.BytesIO(processing.png_bytes(result))))
    assert np.array_equal(png, written.pixel_array)


def test_source_image_roundtrip_type():
    """Sanity: decode_upload returns the project's SourceImage (the download paths rely on from_unit)."""
    upload = processing.decode_upload("x.png", _png(np.zeros((16, 16), np.uint8)), 10**6)
    assert isinstance(upload, SourceImage) and upload.bit_depth == 8


def test_dicom_upload_without_preamble_and_too_large_dicom(realxray_dir):
    """A .dcm upload lacking the 128-byte preamble was sent to Pillow and refused; a DICOM over
    the limit must be refused from its header, in the same sentence as an oversized PNG."""
    data = (realxray_dir / "RG1_UNCR.dcm").read_bytes()
    upload = processing.decode_upload("chest.dcm", data[132:], max_pixels=4_000_000)
    assert upload.kind == "dicom" and upload.path.name == "chest.dcm" and upload.height == 1955
    with pytest.raises(UploadError, match="'chest.dcm' is 1841 x 1955 px .* too large for this demo"):
        processing.decode_upload("chest.dcm", data, max_pixels=1_000_000)
