"""DICOM in, DICOM out: patient/study kept, geometry fixed, a new instance, MONOCHROME1 intact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dist_train.degradation import bicubic_downsample
from launch.cli import main as cxr_sr
from tests.export_helpers import ToyGenerator, export_model

KEPT = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
        "StudyDate", "AccessionNumber", "Modality", "PhotometricInterpretation", "BitsStored")


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return export_model(tmp_path_factory.mktemp("toy") / "toy.pt", ToyGenerator())


def _round_trip(model: Path, source: Path, out_dir: Path):
    import pydicom

    assert cxr_sr(["upscale", "--model", str(model), "-i", str(source), "-o", str(out_dir),
                   "--no-progress"]) == 0
    return pydicom.dcmread(source), pydicom.dcmread(out_dir / f"{source.stem}.dcm")


def test_monochrome1_15bit_round_trip(toy_model, realxray_dir, tmp_path):
    """RG1_UNCR.dcm (real MONOCHROME1 15-bit CR): metadata kept, 4x geometry, values not inverted.

    If MONOCHROME1 were inverted on the way in but not on the way out (or vice versa), the
    downsampled output would anti-correlate with the input; the correlation check catches it.
    """
    before, after = _round_trip(toy_model, realxray_dir / "RG1_UNCR.dcm", tmp_path)
    for keyword in KEPT:
        assert after.get(keyword) == before.get(keyword), keyword
    assert (after.Rows, after.Columns) == (4 * before.Rows, 4 * before.Columns)
    assert after.SOPInstanceUID != before.SOPInstanceUID
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert after.SourceImageSequence[0].ReferencedSOPInstanceUID == before.SOPInstanceUID
    assert "DERIVED" in after.ImageType and "super-resolution" in after.DerivationDescription
    stored_in, stored_out = before.pixel_array.astype(np.float32), after.pixel_array.astype(np.float32)
    assert stored_out.max() <= 2**15 - 1
    crop_out = torch.from_numpy(stored_out[: 4 * 480, : 4 * 460])[None, None] / 32767
    down = bicubic_downsample(crop_out, 4)[0, 0].numpy() * 32767
    assert np.corrcoef(down.ravel(), stored_in[:480, :460].ravel())[0, 1] > 0.99
    assert abs(down.mean() - stored_in[:480, :460].mean()) < 0.01 * stored_in.max()


def test_compressed_dicom_spacing_divided_by_scale(toy_model, realxray_dir, tmp_path):
    """JPEG-baseline input is decoded and written uncompressed; PixelSpacing shrinks 4x."""
    from pydicom.uid import ExplicitVRLittleEndian

    source = next(iter(sorted(realxray_dir.glob("siim_*.dcm"))))
    before, after = _round_trip(toy_model, source, tmp_path)
    assert after.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert [float(v) for v in after.PixelSpacing] == pytest.approx([float(v) / 4 for v in before.PixelSpacing])
    assert after.pixel_array.shape == (4096, 4096) and after.pixel_array.dtype == np.uint8
    assert after.PatientID == before.PatientID and after.StudyInstanceUID == before.StudyInstanceUID


def _cropped_copy(source: Path, out: Path, rows: int = 256, cols: int = 200) -> Path:
    """A small crop of a real DICOM (in tmp, never in the repo): same header, fewer pixels."""
    import pydicom

    dataset = pydicom.dcmread(source)
    pixels = dataset.pixel_array[:rows, :cols].copy()
    dataset.Rows, dataset.Columns, dataset.PixelData = rows, cols, pixels.tobytes()
    dataset.save_as(out)
    return out


def test_dicom_written_as_png_by_option(toy_model, realxray_dir, tmp_path):
    """--output-format png gives a 16-bit PNG for the 15-bit CR, still bright where tissue is dense."""
    from PIL import Image

    import pydicom

    source = _cropped_copy(realxray_dir / "RG1_UNCR.dcm", tmp_path / "rg1_crop.dcm")
    assert cxr_sr(["upscale", "--model", str(toy_model), "-i", str(source), "-o", str(tmp_path / "out"),
                   "--output-format", "png", "--no-progress"]) == 0
    image = np.asarray(Image.open(tmp_path / "out" / "rg1_crop.png"), np.float64)
    assert image.shape == (4 * 256, 4 * 200) and image.max() > 255
    stored = pydicom.dcmread(source).pixel_array.astype(np.float64)
    # MONOCHROME1: PNG (display sense, 1 = bright) must anti-correlate with the stored values
    down = image.reshape(256, 4, 200, 4).mean(axis=(1, 3))
    assert np.corrcoef(down.ravel(), stored.ravel())[0, 1] < -0.99


def test_dicom_pixel_limit_checked_before_decoding(realxray_dir):
    """--max-input-pixels guards DICOM as it does PNG: a DICOM of any size is refused before decoding."""
    from export.image_io import ImageTooLargeError, read_image

    with pytest.raises(ImageTooLargeError, match="1841x1955 px is above"):
        read_image(realxray_dir / "RG1_UNCR.dcm", max_pixels=10)


def test_dicom_without_preamble_is_read_by_its_name(realxray_dir, tmp_path):
    """Some writers omit the 128-byte preamble; data_prep read such a .dcm/.dic, upscale did not."""
    from export.image_io import read_image
    from export.inputs import collect_inputs

    data = (realxray_dir / "RG1_UNCR.dcm").read_bytes()[132:]
    (tmp_path / "no_preamble.dic").write_bytes(data)
    image = read_image(tmp_path / "no_preamble.dic")
    assert image.kind == "dicom" and (image.width, image.height) == (1841, 1955)
    assert read_image(data, name="upload.dcm").kind == "dicom"
    assert collect_inputs([tmp_path]) == [tmp_path / "no_preamble.dic"]


def test_dicom_input_keeps_one_copy_of_its_pixels(realxray_dir):
    """The dataset kept for the output held the encoded pixels and pydicom's decoded cache as
    well as `stored`: three copies of the image, deep-copied again when writing DICOM."""
    from export.image_io import read_image

    image = read_image(realxray_dir / "RG1_UNCR.dcm")
    assert "PixelData" not in image.dataset and image.dataset._pixel_array is None
    assert image.stored.dtype == np.uint16 and image.stored.shape == (1955, 1841)
