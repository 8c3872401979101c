"""Images for `cxr-sr upscale`: read at full bit depth, written back at the same depth.

Unlike data_prep.image_io.read_gray8 (8-bit, for training shards), upscaling must keep 16-bit PNG
and DICOM precision and be able to write the values back, so pixels are kept as their stored
integers and mapped to [0, 1] by `SourceImage.to_unit`: PNG linearly by its bit depth, DICOM
through data_prep.dicom_io's display mapping (modality LUT, VOI window, MONOCHROME1), the one
`prep shard` applies to training images, so the model sees what it was trained on. Error type,
format sniffing and DICOM decoding are shared with data_prep.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from data_prep.atomic import atomic_open
from data_prep.image_io import DICOM_SUFFIXES, ImageDecodeError, sniff_format

MIN_SIDE_PX = 8  # docs/contracts.md §4: any h, w >= 8
DEFAULT_MAX_INPUT_PIXELS = 25_000 * 25_000  # above Pillow's bomb guard; 20,000 x 20,000 must pass


FROM_UNIT_CHUNK_PX = 1 << 22  # pixels per np.interp call: bounds its float64 temporaries


@dataclass(frozen=True)
class DicomLevels:
    """data_prep.dicom_io's display mapping of one DICOM image as a table over its stored levels,
    and the inverse of that table for writing model output back as stored values.

    The inverse is exact (``from_unit(to_unit(s)) == s``) for the stored levels whose display
    values are distinct, ``exact_low..exact_high``: the VOI window's span. Levels beyond it
    saturate at 0 or 1 on the way in, and come back as the window's edge levels.
    """

    table: np.ndarray  # float32 display value (1 = bright) of each stored level
    inverse_units: np.ndarray  # increasing display values of the table
    inverse_stored: np.ndarray  # float64 stored level for each: np.interp's fp
    exact_low: int
    exact_high: int

    @classmethod
    def of(cls, stored: np.ndarray, dataset: Any) -> tuple[DicomLevels, list[str]]:
        """The mapping of ``stored`` (unsigned, H x W) under ``dataset``'s header, and notes
        saying which VOI it applied and which stored range the output inverts exactly."""
        from data_prep.dicom_io import display_table

        table64, voi, counts = display_table(stored, dataset)
        table = table64.astype(np.float32)
        levels = np.arange(table.size)
        if table[-1] < table[0]:  # MONOCHROME1 or a negative slope: walk the levels downwards
            levels = levels[::-1]
        ordered = table[levels]
        units, first, run = np.unique(ordered, return_index=True, return_counts=True)
        # a level for each distinct display value: the middle of a run of equal values, except the
        # saturated runs at both ends, whose inner edge is taken so that output just inside
        # (0, 1) lands next to the window instead of far out in the saturated levels
        pick = first + run // 2
        pick[0], pick[-1] = first[0] + run[0] - 1, first[-1]
        picked = levels[pick]
        low, high = sorted((int(picked[0]), int(picked[-1])))
        notes = [f"DICOM mapped to display values as `prep shard` maps training images: {_describe(voi)}"
                 + ("; MONOCHROME1 inverted" if str(dataset.PhotometricInterpretation).upper() == "MONOCHROME1"
                    else "")]
        outside = int(counts[:low].sum() + counts[high + 1:].sum())
        if not np.all(np.diff(ordered) >= 0):
            notes.append("display mapping not monotonic: DICOM output values are approximate")
        elif outside:
            notes.append(f"DICOM output: stored values {low}..{high} are inverted exactly; {outside} input "
                         f"pixels ({100 * outside / stored.size:.2f}%) lie outside and come back as {low} or {high}")
        else:
            notes.append(f"DICOM output: the input's stored values lie within {low}..{high}, which is "
                         "inverted exactly")
        return cls(table, units, picked.astype(np.float64), low, high), notes

    def to_unit(self, stored: np.ndarray) -> np.ndarray:
        """float32 display values of stored levels."""
        return self.table[stored]

    def from_unit(self, unit: np.ndarray, dtype: type) -> np.ndarray:
        """Stored levels (rounded, ``dtype``) whose display values are ``unit`` (clipped to [0, 1])."""
        out = np.empty(unit.shape, dtype)
        flat_unit, flat_out = unit.reshape(-1), out.reshape(-1)
        for start in range(0, flat_unit.size, FROM_UNIT_CHUNK_PX):
            part = np.clip(flat_unit[start:start + FROM_UNIT_CHUNK_PX], 0.0, 1.0)
            flat_out[start:start + FROM_UNIT_CHUNK_PX] = np.rint(np.interp(part, self.inverse_units,
                                                                           self.inverse_stored))
        return out


def _describe(voi: dict) -> str:
    """One phrase for a VOI record of data_prep.dicom_io."""
    if voi["kind"] == "window":
        return f"VOI window center {voi['center']:g}, width {voi['width']:g} ({voi['function']})"
    if voi["kind"] == "min-max":
        return f"no VOI in the header: modality values {voi['low']:g}..{voi['high']:g} mapped linearly"
    if voi["kind"] == "voi_lut":
        return f"VOI LUT ({voi['lut_bits']} bits{', ' + voi['explanation'] if voi['explanation'] else ''})"
    return "no VOI in the header: 8-bit values kept (value / 255)"


@dataclass
class SourceImage:
    """One decoded input: stored integer pixels (H x W) and their map to [0, 1] (1 = bright).

    PNG: ``unit = (stored - offset) / span``. DICOM: ``levels`` (the display mapping training
    used), exactly invertible over the VOI window.
    """

    path: Path
    kind: str  # "png" or "dicom"
    stored: np.ndarray  # uint8 or uint16, H x W
    bit_depth: int  # of the output file: 8 or 16
    offset: float = 0.0
    span: float = 255.0
    invert: bool = False
    levels: DicomLevels | None = None  # DICOM: replaces offset, span and invert
    dataset: Any = None  # the pydicom Dataset (pixels stripped on write) for DICOM input
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.stored.shape[0])

    @property
    def width(self) -> int:
        return int(self.stored.shape[1])

    def to_unit(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """float32 [0, 1] of a region (the whole image by default), 1 = bright."""
        if self.levels is not None:
            return self.levels.to_unit(self.stored[rows, cols])
        unit = (self.stored[rows, cols].astype(np.float32) - np.float32(self.offset)) / np.float32(self.span)
        return 1.0 - unit if self.invert else unit

    def display_levels(self, unit: np.ndarray) -> np.ndarray:
        """[0, 1] (1 = bright) to the full 8/16-bit range, for PNG, which has no MONOCHROME1.

        Equals `from_unit` for PNG input; for DICOM it gives a PNG that viewers show the right
        way round, stretched to the full range of the output depth.
        """
        dtype, peak = (np.uint8, 255.0) if self.bit_depth == 8 else (np.uint16, 65535.0)
        return np.rint(np.clip(unit, 0.0, 1.0) * np.float32(peak)).astype(dtype)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Inverse of `to_unit` for model output in [0, 1]: rounded stored integers."""
        dtype = np.uint8 if self.bit_depth == 8 else np.uint16
        if self.levels is not None:
            return self.levels.from_unit(unit, dtype)
        unit = np.clip(unit, 0.0, 1.0)
        if self.invert:
            unit = 1.0 - unit
        return np.rint(unit * np.float32(self.span) + np.float32(self.offset)).astype(dtype)


class ImageTooLargeError(ImageDecodeError):
    """An image whose header gives more pixels than allowed; raised before pixels are decoded."""

    def __init__(self, name: str, width: int, height: int, max_pixels: int):
        self.width, self.height, self.max_pixels = width, height, max_pixels
        super().__init__(name, f"{width}x{height} px is above the --max-input-pixels limit of {max_pixels}")


def is_dicom(head: bytes, name: str) -> bool:
    """DICOM by its marker, or by its name when the 128-byte preamble is missing (as read_gray8 does)."""
    kind = sniff_format(head)
    return kind == "dicom" or (kind == "other" and name.lower().endswith(DICOM_SUFFIXES))


def read_image(source: Path | str | bytes, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
               name: str | None = None) -> SourceImage:
    """Decode a PNG (8/16-bit, RGB/RGBA reduced to gray) or a DICOM file, from a path or its bytes.

    `name` labels errors and `SourceImage.path` (defaults to the path; needed to recognise bytes
    of a DICOM file without a preamble). Raises `ImageDecodeError` (one line naming the file) for
    zero-byte, truncated, non-image or too-small input, and its subclass `ImageTooLargeError`,
    before any pixel is decoded, for more than `max_pixels`.
    """
    if isinstance(source, (str, Path)):
        name = name or str(source)
        try:
            with Path(source).open("rb") as handle:
                head = handle.read(132)
        except OSError as exc:
            raise ImageDecodeError(name, f"cannot read: {exc.strerror or exc}") from exc
    else:
        name = name or "<bytes>"
        head = bytes(source[:132])
    if sniff_format(head) == "empty":
        raise ImageDecodeError(name, "zero-byte file")
    if is_dicom(head, name):
        image = _read_dicom(source, name, max_pixels)
    else:
        image = _read_pillow(source if isinstance(source, (str, Path)) else io.BytesIO(source), name, max_pixels)
    if min(image.height, image.width) < MIN_SIDE_PX:
        raise ImageDecodeError(name, f"image is {image.width}x{image.height} px; "
                               f"the model needs at least {MIN_SIDE_PX} px per side")
    return image


def _read_pillow(source: Path | str | io.BytesIO, name: str, max_pixels: int) -> SourceImage:
    saved_limit = Image.MAX_IMAGE_PIXELS
    # Pillow's decompression-bomb guard (checked in open) is replaced by our own limit below,
    # which is what lets 20,000 x 20,000 radiographs through
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(source) as image:
            if image.width * image.height > max_pixels:
                raise ImageTooLargeError(name, image.width, image.height, max_pixels)
            image.load()
            stored, bit_depth, notes = _gray_stored(image, name)
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... for bad files
        raise ImageDecodeError(name, f"not a decodable image ({type(exc).__name__}: {exc})") from exc
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit
    return SourceImage(Path(name), "png", stored, bit_depth, span=float(2**bit_depth - 1), notes=notes)


def _gray_stored(image: Image.Image, name: str) -> tuple[np.ndarray, int, list[str]]:
    """(uint8/uint16 H x W, bit depth, notes) of a decoded Pillow image."""
    if image.mode == "L":
        return np.asarray(image), 8, []
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise ImageDecodeError(name, f"{image.mode} values outside 0..65535")
        return values.astype(np.uint16), 16, []
    if image.mode in ("RGB", "RGBA", "LA", "P", "PA"):
        notes = [f"{image.mode} reduced to gray (ITU-R 601-2 luma; exact when R=G=B)"]
        return np.asarray(image.convert("L")), 8, notes
    raise ImageDecodeError(name, f"unsupported pixel mode {image.mode}")


def _read_dicom(source: Path | str | bytes, name: str, max_pixels: int) -> SourceImage:
    from data_prep.dicom_io import decoded_pixels, read_dataset

    if isinstance(source, (str, Path)):
        try:
            source = Path(source).read_bytes()
        except OSError as exc:
            raise ImageDecodeError(name, f"cannot read: {exc.strerror or exc}") from exc
    dataset = read_dataset(source, name)
    del source
    width, height = int(dataset.get("Columns", 0) or 0), int(dataset.get("Rows", 0) or 0)
    if width * height > max_pixels:
        raise ImageTooLargeError(name, width, height, max_pixels)
    decoded = decoded_pixels(dataset, name)
    # only the stored array is kept: the encoded bytes and pydicom's cached array would be two
    # more copies of the image held (and deep-copied by upscaled_dataset) until the output is
    # written; deleting PixelData also drops pydicom's cache
    del dataset.PixelData
    if int(dataset.get("PixelRepresentation", 0) or 0) != 0 or decoded.dtype.kind != "u":
        raise ImageDecodeError(name, "signed pixel data is not supported")
    bits_stored = int(dataset.get("BitsStored", 8 * decoded.itemsize))
    stored = decoded.astype(np.uint16 if bits_stored > 8 else np.uint8, copy=False)
    del decoded
    levels, notes = DicomLevels.of(stored, dataset)
    return SourceImage(Path(name), "dicom", stored, bit_depth=16 if bits_stored > 8 else 8,
                       levels=levels, dataset=dataset, notes=notes)


def write_png(path: Path, stored: np.ndarray) -> None:
    """8- or 16-bit grayscale PNG of a uint8/uint16 H x W array, written atomically."""
    with atomic_open(path) as handle:
        Image.fromarray(stored).save(handle, format="PNG", compress_level=3)
