"""Decoding to 8-bit gray: every PNG flavour NIH and users send, and real DICOMs."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.image_io import ImageDecodeError, encode_png_gray8, read_gray8
from data_prep.png_check import verify_plain_gray8_png
from tests.data_prep_fixtures import gradient, png_bytes


def test_rgba_nih_file_becomes_its_gray_channel(realxray_dir: Path) -> None:
    """NIH stores some images as RGBA with R=G=B: the gray value must be kept, not re-weighted."""
    path = realxray_dir / "00000100_000.png"
    pixels, record = read_gray8(path)
    rgba = np.asarray(Image.open(path))
    assert pixels.dtype == np.uint8 and pixels.shape == (1024, 1024)
    assert np.array_equal(pixels, rgba[..., 0])
    assert record["mode"] == "RGBA" and any("R=G=B" in step for step in record["steps"])


def test_monochrome1_dicom_is_inverted_and_windowed(realxray_dir: Path) -> None:
    """MONOCHROME1 stores bone dark; unless inverted the model trains on negatives. The 15-bit
    values must go through the file's window, recorded."""
    import pydicom

    path = realxray_dir / "RG1_UNCR.dcm"
    pixels, record = read_gray8(path)
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    assert pixels.shape == raw.shape and pixels.dtype == np.uint8
    assert np.corrcoef(raw.ravel()[::97], pixels.ravel()[::97].astype(np.float64))[0, 1] < -0.9
    assert record["mode"] == "MONOCHROME1" and "MONOCHROME1 inverted" in record["steps"]
    assert record["voi"] == {"kind": "window", "center": 15000.0, "width": 30000.0, "function": "LINEAR"}
    assert record["bits_stored"] == 15


def test_jpeg_compressed_dicom_decodes(realxray_dir: Path) -> None:
    """Hospitals send JPEG-baseline DICOMs; pydicom decodes them through pylibjpeg. 8-bit values
    without a window are kept as they are (no contrast stretch)."""
    path = next(realxray_dir.glob("siim_*.dcm"))
    pixels, record = read_gray8(path)
    assert pixels.shape == (1024, 1024) and record["transfer_syntax"] == "1.2.840.10008.1.2.4.50"
    assert record["voi"]["kind"].startswith("none")
    assert 40 < pixels.mean() < 220


@pytest.mark.parametrize("make, expected_step", [
    (lambda g: np.stack([g, np.full_like(g, 200)], axis=-1), "alpha dropped (min 200)"),
    (lambda g: np.stack([g, g // 2, 255 - g], axis=-1), "luma"),
    (lambda g: g.astype(np.uint16) * 64, "min-max"),
    (lambda g: g.astype(np.uint16), "already within 0..255"),
])
def test_png_modes_reduce_to_gray_with_the_rule_recorded(make, expected_step: str) -> None:
    """Every reduction to 8-bit gray must be deterministic and say which rule it used."""
    gray = gradient(48)
    pixels, record = read_gray8(png_bytes(make(gray)), "x.png")
    assert pixels.dtype == np.uint8 and pixels.shape == gray.shape
    assert any(expected_step in step for step in record["steps"]), record
    if expected_step in ("alpha dropped (min 200)", "already within 0..255"):
        assert np.array_equal(pixels, gray)


def test_sixteen_bit_min_max_maps_extremes_to_0_and_255() -> None:
    """The >8-bit rule: linear min-max, so the full 8-bit range is used and order is kept."""
    values = np.array([[1000, 2000], [3000, 4000]], np.uint16)
    pixels, _ = read_gray8(png_bytes(np.kron(values, np.ones((8, 8), np.uint16))), "x.png")
    assert pixels.min() == 0 and pixels.max() == 255 and pixels[0, 0] < pixels[0, 8] < pixels[8, 0]


@pytest.mark.parametrize("data, problem", [
    (b"", "zero-byte file"),
    (b"plain text, not pixels", "not a decodable image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a decodable image"),
])
def test_bad_input_is_a_one_line_error_naming_the_file(data: bytes, problem: str) -> None:
    """Callers print the error as is: it must name the file and fit on one line."""
    with pytest.raises(ImageDecodeError) as caught:
        read_gray8(data, "scan_42.png")
    message = str(caught.value)
    assert message.startswith("scan_42.png: ") and problem in message and "\n" not in message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """A missing file is reported like a bad one, not as a bare OSError traceback."""
    with pytest.raises(ImageDecodeError, match="nothere.png: cannot read"):
        read_gray8(tmp_path / "nothere.png")


def test_reencoded_png_is_lossless_and_passes_the_fast_check() -> None:
    """Converted images are stored losslessly and must satisfy the same check as originals."""
    gray = gradient(64)
    data = encode_png_gray8(gray)
    assert verify_plain_gray8_png(data, "x").width == 64
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), gray)


@pytest.mark.parametrize("damage", ["truncate", "flip", "bad_filter"])
def test_fast_png_check_catches_what_a_decoder_would(damage: str) -> None:
    """The sharder validates plain gray PNGs without Pillow; it must reject every damage that
    would make DALI's decoder fail (truncation, CRC, invalid scanline filter)."""
    import struct
    import zlib

    data = encode_png_gray8(gradient(32))
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        position = data.index(b"IDAT") + 10
        data = data[:position] + bytes([data[position] ^ 0x40]) + data[position + 1:]
    else:
        raw = bytearray(zlib.decompress(data[data.index(b"IDAT") + 4: data.index(b"IEND") - 8]))
        raw[0] = 7
        payload = zlib.compress(bytes(raw))
        chunk = struct.pack(">I", len(payload)) + b"IDAT" + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload))
        data = data[:33] + chunk + data[data.index(b"IEND") - 4:]
    with pytest.raises(ImageDecodeError):
        verify_plain_gray8_png(data, "x.png")


def test_dicom_without_preamble_is_still_read(realxray_dir: Path) -> None:
    """Some writers omit the 128-byte preamble and DICM marker; a .dcm name is enough to try."""
    data = (realxray_dir / "RG1_UNCR.dcm").read_bytes()
    pixels, record = read_gray8(data[132:], "no_preamble.dcm")
    assert pixels.shape == (1955, 1841) and record["mode"] == "MONOCHROME1"
    with pytest.raises(ImageDecodeError, match="junk.dcm: no pixel data"):
        read_gray8(b"not dicom at all" * 20, "junk.dcm")


def _rescaled_dicom(stored: np.ndarray, slope: float, intercept: float, voi: dict) -> bytes:
    """A small MONOCHROME2 DICOM with a non-identity rescale and the given VOI attributes."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if "lut" in voi:
        item = Dataset()
        item.add_new(0x00283002, "US", [len(voi["lut"]), 0, 16])  # LUTDescriptor: entries, first, bits
        item.add_new(0x00283006, "US", list(voi["lut"]))  # LUTData
        ds.VOILUTSequence = [item]
    else:
        ds.WindowCenter, ds.WindowWidth = voi["center"], voi["width"]
    ds.PixelData = stored.astype("<u2").tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("voi", [{"lut": [i * 100 for i in range(512)]}, {"center": 250.0, "width": 200.0}])
def test_voi_applies_to_the_rescaled_values(voi: dict) -> None:
    """PS3.4 N.2: the VOI LUT or window takes the modality (rescale) output, not the stored
    values; a VOI LUT indexed by stored values shows a CT-like image with the wrong contrast."""
    from data_prep.dicom_io import dicom_to_unit_float

    stored = (np.arange(16, dtype=np.uint16) * 10).reshape(4, 4)
    modality = stored * 2.0 + 100.0
    unit, record = dicom_to_unit_float(_rescaled_dicom(stored, 2.0, 100.0, voi), "rescaled.dcm")
    if "lut" in voi:
        expected = modality * 100 / 65535
    else:
        expected = np.clip((modality - (voi["center"] - 0.5)) / (voi["width"] - 1.0) + 0.5, 0.0, 1.0)
    assert record["modality_lut"] == {"slope": 2.0, "intercept": 100.0}
    assert record["voi"]["kind"] == ("voi_lut" if "lut" in voi else "window")
    np.testing.assert_allclose(unit, expected, atol=1e-12)


def _adam7_png(gray: np.ndarray) -> bytes:
    """An interlaced 8-bit gray PNG (Pillow cannot write one): the 7 Adam7 passes, filter 0."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b"".join(b"\x00" + row.tobytes() for x0, y0, dx, dy in passes
                   for row in gray[y0::dy, x0::dx] if row.size)
    header = struct.pack(">IIBBBBB", gray.shape[1], gray.shape[0], 8, 0, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_interlaced_gray_png_is_reencoded_and_says_so(tmp_path: Path) -> None:
    """DALI decodes interlaced PNGs slowly and the fast check cannot validate them: they are
    stored re-encoded (same pixels), and the record says why the bytes differ from the source."""
    from data_prep.catalog import Candidate
    from data_prep.metadata import ImageMeta
    from data_prep.shard_writer import SizeRule, build_sample

    gray = gradient(64)
    data = _adam7_png(gray)
    assert Image.open(io.BytesIO(data)).info.get("interlace") == 1
    item = Candidate("00000001_000.png", "00000001_000", len(data),
                     ImageMeta("00000001_000.png", "00000001"), "metadata")
    sample, converted = build_sample(data, item, "train", SizeRule())
    assert converted and np.array_equal(np.asarray(Image.open(io.BytesIO(sample["png"]))), gray)
    assert "re-encoded" in json.loads(sample["json"])["conversion"]["steps"][0]
