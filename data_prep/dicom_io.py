"""DICOM pixels to display values in [0, 1], the way a radiology viewer would show them.

Order follows the DICOM grayscale pipeline (PS3.4 N.2): stored values -> modality LUT / rescale
-> VOI (the first VOI LUT, else the first window, else min-max of the image) -> presentation
(MONOCHROME1 is inverted so that 1 is always bright). Compressed transfer syntaxes decode through
whatever pydicom pixel handlers are installed (pylibjpeg for JPEG here).

This is the one mapping for DICOM: `prep shard` stores round(255 * display value) as training
pixels, and `cxr-sr upscale` feeds the model the same display values through `display_table`,
so a model sees at inference the intensities it was trained on.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from data_prep.image_io import ImageDecodeError


def _first(value: Any) -> float:
    """A window value may be multi-valued (several presets); the first is the default one."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def read_dataset(data: bytes, name: str) -> Any:
    """Parse a DICOM file's bytes (pixel data included) or raise `ImageDecodeError`."""
    import pydicom

    try:
        # force: accept files without the preamble/DICM marker (read_gray8 sends only .dcm ones)
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageDecodeError(name, f"unreadable DICOM ({type(exc).__name__}: {exc})") from exc


def decoded_pixels(ds: Any, name: str) -> np.ndarray:
    """The stored pixel values of a single-frame grayscale image, decompressed."""
    if "PixelData" not in ds:
        raise ImageDecodeError(name, "no pixel data (not a DICOM image)")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageDecodeError(name, f"photometric interpretation {photometric or 'missing'}; "
                               "only MONOCHROME1/2 radiographs are supported")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ImageDecodeError(name, f"{ds.NumberOfFrames} frames; one image per file expected")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ImageDecodeError(name, f"cannot decode pixel data (transfer syntax {syntax}; "
                               f"{type(exc).__name__}: {exc})") from exc
    if pixels.ndim != 2:
        raise ImageDecodeError(name, f"pixel array of shape {pixels.shape}; expected 2-D")
    return pixels


def _apply_voi(values: np.ndarray, ds: Any,
               image_range: tuple[float, float] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Map modality values (the rescale's output, PS3.4 N.2) to [0, 1]: VOI LUT, else window,
    else 8-bit as is, else min-max. The last two look at the whole image's modality range,
    ``image_range`` (default: that of ``values``)."""
    from pydicom.pixels import apply_voi

    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        # The LUT is indexed by integer modality values; a rescale gives floats even when integral.
        indices = np.rint(values).astype(np.int64)
        out = apply_voi(indices, ds, index=0).astype(np.float64) / (2**bits - 1)
        return np.clip(out, 0.0, 1.0), {"kind": "voi_lut", "lut_bits": bits,
                                        "explanation": str(item.get("LUTExplanation", ""))}
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper() or "LINEAR"
        if width > 1 or (function == "LINEAR_EXACT" and width > 0):
            return _window(values, center, width, function), {
                "kind": "window", "center": center, "width": width, "function": function}
    low, high = image_range if image_range is not None else (float(values.min()), float(values.max()))
    if int(ds.get("BitsStored", 16) or 16) <= 8 and low >= 0 and high <= 255:
        return values / 255.0, {"kind": "none (8-bit values kept)"}
    spread = high - low if high > low else 1.0
    return (values - low) / spread, {"kind": "min-max", "low": low, "high": high}


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """The VOI window of PS3.3 C.11.2.1.2, giving [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def display_unit(raw: np.ndarray, ds: Any,
                 image_range: tuple[float, float] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Stored values to float64 display values in [0, 1], 1 = bright: modality LUT, VOI, and
    MONOCHROME1 inverted; with the VOI record. ``image_range``: see `_apply_voi`."""
    from pydicom.pixels import apply_modality_lut

    values = apply_modality_lut(raw, ds).astype(np.float64)
    unit, voi = _apply_voi(values, ds, image_range)
    if str(ds.PhotometricInterpretation).upper() == "MONOCHROME1":
        unit = 1.0 - unit
    return unit, voi


def display_table(raw: np.ndarray, ds: Any) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """`display_unit` as a lookup table over every stored level 0..max of an unsigned image:
    ``table[raw]`` equals ``display_unit(raw, ds)[0]`` (the min-max fallback still sees the
    image's own range). Returns (table, VOI record, pixel count per level)."""
    from pydicom.pixels import apply_modality_lut

    if raw.dtype.kind != "u":
        raise ValueError(f"display_table needs unsigned stored values, not {raw.dtype}")
    bits_stored = int(ds.get("BitsStored", 8 * raw.itemsize) or 8 * raw.itemsize)
    counts = np.bincount(raw.ravel(), minlength=2**bits_stored)
    present = apply_modality_lut(np.flatnonzero(counts), ds).astype(np.float64)
    levels = np.arange(counts.size).astype(raw.dtype)  # counts.size <= 1 + raw's dtype maximum
    table, voi = display_unit(levels, ds, (float(present.min()), float(present.max())))
    return table, voi, counts


def dicom_to_unit_float(data: bytes, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode a DICOM file to float64 HxW in [0, 1] (1 = bright) and the conversion record."""
    ds = read_dataset(data, name)
    raw = decoded_pixels(ds, name)
    unit, voi = display_unit(raw, ds)
    photometric = str(ds.PhotometricInterpretation).upper()
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown") if hasattr(ds, "file_meta") else "unknown"
    record = {
        "format": "dicom", "mode": photometric, "size": [int(raw.shape[1]), int(raw.shape[0])],
        "transfer_syntax": str(syntax), "bits_stored": int(ds.get("BitsStored", 0) or 0),
        "modality_lut": {"slope": float(ds.get("RescaleSlope", 1) or 1),
                         "intercept": float(ds.get("RescaleIntercept", 0) or 0)},
        "voi": voi, "steps": [f"VOI {voi['kind']}"],
    }
    if photometric == "MONOCHROME1":
        record["steps"].append("MONOCHROME1 inverted")
    return unit, record


def dicom_patient_id(data: bytes) -> str | None:
    """PatientID from the header only (fast: pixel data is not read), or None."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception:
        return None
    value = str(ds.get("PatientID", "") or "").strip()
    return value or None
