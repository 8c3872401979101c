"""Decode any supported radiograph file to 8-bit grayscale, recording how it was converted.

Supported: PNG (8/16-bit gray, RGB/RGBA with equal channels or not, LA, palette), DICOM
(MONOCHROME1 inverted, modality rescale, VOI LUT or window applied when present, compressed
transfer syntaxes through pydicom's pixel handlers) and anything else Pillow reads (JPEG, TIFF).
Every conversion returns a json-ready dict saying what was done, so a shard can carry the record
next to the pixels. Bad input raises `ImageDecodeError`, whose message is one line naming the file.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
# What a folder input may hold, for every command that lists one (`prep shard`, `upscale`,
# `bench quality`, `data.backend=folder`): a file is taken by one of these suffixes, or, without
# a suffix, when it carries DICOM's marker (many PACS exports have no extension).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", *DICOM_SUFFIXES)
PNG_COMPRESS_LEVEL = 3  # re-encoding is rare (RGBA NIH files, DICOM); 3 is 4x faster than 6, 10% larger


class ImageDecodeError(ValueError):
    """A file that is not a decodable image; `str()` is one line: `name: problem`."""

    def __init__(self, name: str, problem: str):
        self.name = name
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{name}: {self.problem}")


def sniff_format(data: bytes) -> str:
    """'png', 'dicom', 'empty' or 'other', from the leading bytes only."""
    if not data:
        return "empty"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    return "other"


def folder_skip_reason(path: Path) -> str | None:
    """None when a file found in a folder is an image to try (see IMAGE_SUFFIXES), else why not.

    Only extension-less files are opened (132 bytes), to look for the DICOM marker.
    """
    if path.name.startswith("."):
        return "hidden file"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return None
    if suffix == "":
        try:
            with open(path, "rb") as handle:
                if sniff_format(handle.read(132)) == "dicom":
                    return None
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"
        return "no suffix and no DICOM marker"
    return f"suffix {path.suffix} is not one of {' '.join(IMAGE_SUFFIXES)}"


def read_gray8(source: Path | str | bytes, name: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode `source` (a path or the file's bytes) to a uint8 HxW array plus the conversion record.

    `name` labels errors (defaults to the path). Raises `ImageDecodeError` for anything that is
    not a complete, supported image.
    """
    if isinstance(source, (str, Path)):
        name = name or str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageDecodeError(name, f"cannot read: {exc.strerror or exc}") from exc
    else:
        data = bytes(source)
        name = name or "<bytes>"
    kind = sniff_format(data)
    if kind == "empty":
        raise ImageDecodeError(name, "zero-byte file")
    if kind == "dicom" or (kind == "other" and name.lower().endswith(DICOM_SUFFIXES)):
        return _dicom_to_gray8(data, name)  # some DICOM writers omit the 128-byte preamble
    return _pillow_to_gray8(data, name)


def encode_png_gray8(pixels: np.ndarray) -> bytes:
    """Losslessly encode a uint8 HxW array as an 8-bit grayscale PNG (deterministic bytes)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise ValueError(f"expected a uint8 HxW array, got {pixels.dtype} with shape {pixels.shape}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _pillow_to_gray8(data: bytes, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        # Pillow's messages may embed object reprs with addresses; keep reasons deterministic.
        detail = re.sub(r"\s*<[^>]* at 0x[0-9a-f]+>", "", str(exc))
        raise ImageDecodeError(name, f"not a decodable image ({type(exc).__name__}: {detail})") from exc
    record: dict[str, Any] = {"format": (image.format or "unknown").lower(), "mode": image.mode,
                              "size": list(image.size)}
    if getattr(image, "n_frames", 1) > 1:
        raise ImageDecodeError(name, f"{image.n_frames} frames; one image per file expected")
    pixels, steps = _mode_to_gray8(image, name)
    record["steps"] = steps
    return pixels, record


def _mode_to_gray8(image: Image.Image, name: str) -> tuple[np.ndarray, list[str]]:
    """Reduce a decoded Pillow image of any mode to uint8 gray; the steps say how."""
    mode = image.mode
    if mode == "L":
        return np.asarray(image, np.uint8), []
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _scale_to_gray8(np.asarray(image), f"{mode} pixels")
    steps: list[str] = []
    if mode in ("P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        target = "RGBA" if mode == "PA" or (mode == "P" and "transparency" in image.info) else "RGB"
        image = image.convert(target)
        steps.append(f"{mode} -> {target}")
        mode = target
    if mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"))
        steps.append(f"alpha dropped (min {int(alpha.min())})")
        image = image.convert("L" if mode == "LA" else "RGB")
        mode = image.mode
    if mode == "L":
        return np.asarray(image, np.uint8), steps
    if mode != "RGB":
        raise ImageDecodeError(name, f"unsupported pixel mode {image.mode}")
    rgb = np.asarray(image, np.uint8)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        steps.append("R=G=B: took one channel")
        return np.ascontiguousarray(rgb[..., 0]), steps
    steps.append("colour -> gray by ITU-R 601-2 luma (Pillow convert('L'))")
    return np.asarray(image.convert("L"), np.uint8), steps


def _scale_to_gray8(values: np.ndarray, what: str) -> tuple[np.ndarray, list[str]]:
    """More-than-8-bit values to uint8: unchanged if they already fit, else linear min-max."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 255 and np.all(values == np.round(values)):
        return values.astype(np.uint8), [f"{what} already within 0..255: kept"]
    if high == low:
        return np.zeros(values.shape, np.uint8), [f"{what} constant ({low:g}): mapped to 0"]
    scaled = np.round((values - low) * (255.0 / (high - low)))
    return scaled.astype(np.uint8), [f"{what} linear min-max [{low:g}, {high:g}] -> [0, 255]"]


def _dicom_to_gray8(data: bytes, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    # Imported here: pydicom is needed only for DICOM input, and importing it costs time.
    from data_prep.dicom_io import dicom_to_unit_float

    unit, record = dicom_to_unit_float(data, name)
    record["steps"].append("round(255 * value) to uint8")
    return np.round(unit * 255.0).astype(np.uint8), record
