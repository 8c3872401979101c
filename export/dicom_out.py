"""Upscaled DICOM output: same patient and study, new instance, geometry fixed, derivation noted."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.atomic import atomic_open

MAX_DICOM_SIDE_PX = 65535  # Rows and Columns are US (16-bit) attributes
# spacing attributes whose values describe the pixel grid and so shrink by the scale
SPACING_KEYWORDS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")
# attributes made wrong by resampling and that nothing requires: dropped rather than guessed
STALE_KEYWORDS = ("SmallestImagePixelValue", "LargestImagePixelValue", "PixelPaddingValue",
                  "PixelAspectRatio", "PixelSpacingCalibrationType")


def _format_ds(value: float) -> str:
    """A DS value (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"


def upscaled_dataset(source: Any, stored: np.ndarray, scale: int, description: str) -> Any:
    """A new Dataset holding `stored` (uint8/uint16, already in the source's photometric sense
    and stored-value scale: `SourceImage.from_unit` inverts the display mapping, so the source's
    rescale and VOI window still apply to it and are kept).

    Keeps every patient/study attribute; new SOP Instance and Series Instance UIDs; Rows,
    Columns and pixel spacings updated; ImageType DERIVED; DerivationDescription and a
    SourceImageSequence pointing at the original instance; written uncompressed.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    height, width = stored.shape
    if max(height, width) > MAX_DICOM_SIDE_PX:
        raise ValueError(f"output {width}x{height} px exceeds DICOM's {MAX_DICOM_SIDE_PX} px per side; "
                         "write PNG instead (--output-format png)")
    ds = copy.deepcopy(source)
    source_reference = Dataset()
    source_reference.ReferencedSOPClassUID = source.SOPClassUID
    source_reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    ds.SourceImageSequence = Sequence([source_reference])
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.ImageType = ["DERIVED", "SECONDARY"] + list(source.get("ImageType", [])[2:])
    ds.DerivationDescription = description[:1024]
    if "SeriesDescription" in source:
        ds.SeriesDescription = f"{source.SeriesDescription} SR x{scale}"[:64]
    ds.Rows, ds.Columns = height, width
    for keyword in SPACING_KEYWORDS:
        if keyword in ds and ds.data_element(keyword).value:
            ds.data_element(keyword).value = [_format_ds(float(v) / scale) for v in ds.data_element(keyword).value]
    for keyword in STALE_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    ds.BitsAllocated = 8 * stored.itemsize
    ds.BitsStored = min(int(source.get("BitsStored", ds.BitsAllocated)), ds.BitsAllocated)
    ds.HighBit = ds.BitsStored - 1
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW" if stored.itemsize == 2 else "OB"
    ds.file_meta = copy.deepcopy(source.file_meta)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def write_dicom(path: Path, dataset: Any) -> None:
    """Writes `dataset` atomically (temp name, then rename; no temp file left on failure)."""
    with atomic_open(path) as handle:
        dataset.save_as(handle, enforce_file_format=True)
