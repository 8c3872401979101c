"""The app's DICOM download: the SR written as DICOM, derived from the upload when it is DICOM.

A DICOM upload keeps its patient and study (export.dicom_out does the derivation). An upload
treated as HR was downsampled first, so its SR has the original grid: the derivation starts from
a copy of the source whose pixel spacing is that of the LR image. A PNG upload becomes a new
Secondary Capture object, since there is no source object to derive from.
"""
from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np

from export.dicom_out import SPACING_KEYWORDS, upscaled_dataset
from launch.app.processing import HR_MODE, Comparison

DESCRIPTION = "cxr-sr demo app: x{scale} super-resolution ({what})"


def _lr_view(source: Any, scale: int) -> Any:
    """A copy of ``source`` describing its downsample: spacings x scale (pixels are replaced anyway)."""
    lr = copy.deepcopy(source)
    for keyword in SPACING_KEYWORDS:
        if keyword in lr and lr.data_element(keyword).value:
            lr.data_element(keyword).value = [f"{float(v) * scale:.10g}"[:16] for v in lr.data_element(keyword).value]
    return lr


def _secondary_capture(stored: np.ndarray, description: str) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.ConversionType = "OT", "WSD"
    ds.PatientName, ds.PatientID = "Anonymous", ""
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = description[:1024]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = ds.BitsStored = 8 * stored.itemsize
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    ds.PixelData = np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW" if stored.itemsize == 2 else "OB"
    return ds


def dicom_bytes(comparison: Comparison) -> bytes:
    """The SR as a DICOM file (uncompressed, explicit VR little endian)."""
    source, scale = comparison.source, comparison.scale
    stored = source.from_unit(comparison.sr)
    what = "of the 4x downsample of the upload" if comparison.mode == HR_MODE else "of the upload"
    description = DESCRIPTION.format(scale=scale, what=what.replace("4x", f"{scale}x"))
    if source.dataset is not None:
        origin = _lr_view(source.dataset, scale) if comparison.mode == HR_MODE else source.dataset
        dataset = upscaled_dataset(origin, stored, scale, description)
    else:
        dataset = _secondary_capture(stored, description)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
