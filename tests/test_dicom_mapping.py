"""DICOM intensities at inference are the ones training saw, and DICOM output inverts them.

Why: `prep shard` turns a DICOM into training pixels through the modality LUT and the VOI window
(data_prep.dicom_io); `cxr-sr upscale` mapped the stored values min..max linearly instead, so a
windowed radiograph reached the model with another contrast and brightness than any training
image had. Both must go through the one mapping, and the way back to stored values must be exact
over the window (saying in the notes what lies outside it).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from data_prep.dicom_io import dicom_to_unit_float
from data_prep.image_io import read_gray8
from export.image_io import read_image


def _windowed_dicom(stored: np.ndarray, photometric: str = "MONOCHROME2", slope: float = 2.0,
                    intercept: float = -1000.0, center: float = 3000.0, width: float = 2000.0) -> bytes:
    """A 12-bit DICOM with a rescale and a VOI window narrower than its values."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "CR", "synthetic"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.WindowCenter, ds.WindowWidth = center, width
    ds.PixelData = stored.astype("<u2").tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _ramp(rows: int = 64, cols: int = 64) -> np.ndarray:
    """Every 12-bit level, so the window (modality 2000..4000 = stored 1500..2500) clips both ends."""
    return (np.arange(rows * cols) % 4096).reshape(rows, cols).astype(np.uint16)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_upscale_input_is_the_training_mapping_of_a_windowed_dicom(photometric):
    data = _windowed_dicom(_ramp(), photometric)
    image = read_image(data, name="windowed.dcm")
    unit = image.to_unit()
    training_unit, record = dicom_to_unit_float(data, "windowed.dcm")
    assert record["voi"]["kind"] == "window"
    np.testing.assert_allclose(unit, training_unit, atol=1e-7)  # float32 of the same float64 values
    gray8, _ = read_gray8(data, "windowed.dcm")  # the pixels `prep shard` stores
    assert np.array_equal(np.round(unit.astype(np.float64) * 255).astype(np.uint8), gray8)
    # the window clips: a stored-min..max linear map would give neither the 0/1 plateaus nor
    # this contrast (stored 1500..2500 spans the whole display range)
    stored = image.stored
    bright, dark = (stored >= 2500, stored < 1500) if photometric == "MONOCHROME2" else (stored < 1500, stored >= 2500)
    assert np.all(unit[bright] == 1.0) and np.all(unit[dark] == 0.0)
    middle = unit[(stored > 1600) & (stored < 2400)]
    assert middle.min() > 0.0 and middle.max() < 1.0


def test_dicom_output_inverts_the_window_exactly_and_says_what_saturates():
    image = read_image(_windowed_dicom(_ramp(), "MONOCHROME1"), name="windowed.dcm")
    levels = image.levels
    back = image.from_unit(image.to_unit())
    inside = (image.stored >= levels.exact_low) & (image.stored <= levels.exact_high)
    assert 1490 <= levels.exact_low <= 1510 and 2490 <= levels.exact_high <= 2510  # the window's edges
    assert np.array_equal(back[inside], image.stored[inside])
    assert set(np.unique(back[~inside])) == {levels.exact_low, levels.exact_high}
    outside = int((~inside).sum())
    assert any(f"{outside} input pixels" in note and f"{levels.exact_low}..{levels.exact_high}" in note
               for note in image.notes), image.notes
    assert any("VOI window center 3000, width 2000" in note for note in image.notes), image.notes
    # model output between two levels' display values lands between those levels
    between = np.float32(levels.table[2000:2002].astype(np.float64).mean())
    assert image.from_unit(np.array([[between]], np.float32))[0, 0] in (2000, 2001)


def test_dicom_upscale_output_keeps_the_window_and_stays_in_its_range(tmp_path):
    """End to end: the output DICOM keeps the source's window (its stored values are in the
    source's scale), and a 4x upscale of the ramp comes back within the exact range."""
    import pydicom

    from launch.cli import main as cxr_sr
    from tests.export_helpers import ToyGenerator, export_model

    model = export_model(tmp_path / "toy.pt", ToyGenerator())
    source = tmp_path / "windowed.dcm"
    source.write_bytes(_windowed_dicom(_ramp(32, 40)))
    assert cxr_sr(["upscale", "--model", str(model), "-i", str(source), "-o", str(tmp_path / "out"),
                   "--no-progress"]) == 0
    before, after = pydicom.dcmread(source), pydicom.dcmread(tmp_path / "out" / "windowed.dcm")
    assert (after.WindowCenter, after.WindowWidth) == (before.WindowCenter, before.WindowWidth)
    assert (after.RescaleSlope, after.RescaleIntercept) == (before.RescaleSlope, before.RescaleIntercept)
    levels = read_image(source).levels
    out = after.pixel_array
    assert out.shape == (128, 160) and levels.exact_low <= out.min() and out.max() <= levels.exact_high


def test_rg1_uncr_reaches_the_model_as_prep_shard_stores_it(realxray_dir: Path):
    """The real 15-bit MONOCHROME1 CR (window 15000/30000): inference input equals the training
    pixels to the 8-bit level, and every stored value of the image inverts exactly."""
    path = realxray_dir / "RG1_UNCR.dcm"
    image = read_image(path)
    unit = image.to_unit()
    gray8, record = read_gray8(path)
    assert record["voi"]["kind"] == "window" and record["mode"] == "MONOCHROME1"
    assert np.array_equal(np.round(unit.astype(np.float64) * 255).astype(np.uint8), gray8)
    assert np.array_equal(image.from_unit(unit), image.stored)
    assert any("lie within 0..29999" in note for note in image.notes), image.notes
